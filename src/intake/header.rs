//! Header row: delimiter detection and column aliases (`../shared/conventions.md`).

/// The columns offboard understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    UserId,
    Email,
    OrganizationId,
    Provider,
    TransferToDepartmentId,
    Reason,
    EffectiveAt,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::UserId => "user_id",
            Column::Email => "email",
            Column::OrganizationId => "organization_id",
            Column::Provider => "provider",
            Column::TransferToDepartmentId => "transfer_to_department_id",
            Column::Reason => "reason",
            Column::EffectiveAt => "effective_at",
        }
    }

    /// Matches a header cell after lower-casing and turning spaces and
    /// hyphens into `_`.
    pub fn from_header(cell: &str) -> Option<Column> {
        let norm: String = cell
            .trim()
            .chars()
            .map(|c| match c {
                ' ' | '-' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        Some(match norm.as_str() {
            "user_id" | "user" | "userid" | "account_id" => Column::UserId,
            "email" => Column::Email,
            "organization_id" | "org_id" | "organization" | "org" => Column::OrganizationId,
            "provider" => Column::Provider,
            "transfer_to_department_id" | "department_id" | "transfer_to" => {
                Column::TransferToDepartmentId
            }
            "reason" => Column::Reason,
            "effective_at" => Column::EffectiveAt,
            _ => return None,
        })
    }
}

/// Where each known column sits in a record.
/// A header row intake cannot read its rows by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("column {name} appears twice (columns {first} and {second})")]
    Twice {
        name: &'static str,
        first: usize,
        second: usize,
    },
    #[error("the header has no user_id (or email) column")]
    NoUser,
    #[error("the header has no organization_id column")]
    NoOrganization,
}

#[derive(Debug, Clone, Default)]
pub struct ColumnMap {
    slots: [Option<usize>; 7],
}

impl ColumnMap {
    /// Maps the header cells; a column named twice is an error naming both
    /// positions (1-based), since either reading could be the wrong one.
    pub fn from_headers<'a>(
        cells: impl Iterator<Item = &'a str>,
    ) -> Result<ColumnMap, HeaderError> {
        let mut map = ColumnMap::default();
        for (i, cell) in cells.enumerate() {
            if let Some(col) = Column::from_header(cell) {
                let slot = &mut map.slots[col as usize];
                if let Some(first) = slot {
                    return Err(HeaderError::Twice {
                        name: col.name(),
                        first: *first + 1,
                        second: i + 1,
                    });
                }
                *slot = Some(i);
            }
        }
        if map.get(Column::UserId).is_none() && map.get(Column::Email).is_none() {
            return Err(HeaderError::NoUser);
        }
        if map.get(Column::OrganizationId).is_none() {
            return Err(HeaderError::NoOrganization);
        }
        Ok(map)
    }

    pub fn get(&self, col: Column) -> Option<usize> {
        self.slots[col as usize]
    }
}

/// Picks the delimiter that occurs most often in the header line, outside
/// quotes; a header with none of them is comma-separated.
pub fn detect_delimiter(header_line: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in header_line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b',', b';', b'\t'];
    let (best, n) = counts
        .iter()
        .enumerate()
        .max_by_key(|(i, n)| (**n, std::cmp::Reverse(*i)))
        .map(|(i, n)| (candidates[i], *n))
        .unwrap_or((b',', 0));
    if n == 0 { b',' } else { best }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_match_case_insensitively() {
        assert_eq!(Column::from_header(" User ID "), Some(Column::UserId));
        assert_eq!(Column::from_header("ORG-ID"), Some(Column::OrganizationId));
        assert_eq!(
            Column::from_header("Transfer To"),
            Some(Column::TransferToDepartmentId)
        );
        assert_eq!(Column::from_header("account_id"), Some(Column::UserId));
        assert_eq!(Column::from_header("notes"), None);
    }

    #[test]
    fn required_columns() {
        assert!(ColumnMap::from_headers(["user_id", "org"].into_iter()).is_ok());
        assert!(ColumnMap::from_headers(["email", "organization_id"].into_iter()).is_ok());
        let e = ColumnMap::from_headers(["user_id", "reason"].into_iter()).unwrap_err();
        assert!(e.to_string().contains("organization_id"), "{e}");
        let e = ColumnMap::from_headers(["user_id", "org", "user"].into_iter()).unwrap_err();
        assert!(e.to_string().contains("columns 1 and 3"), "{e}");
    }

    #[test]
    fn delimiter_detection() {
        assert_eq!(detect_delimiter(b"user_id,org"), b',');
        assert_eq!(detect_delimiter(b"user_id;org;reason"), b';');
        assert_eq!(detect_delimiter(b"user_id\torg"), b'\t');
        assert_eq!(detect_delimiter(b"\"a;b\",c"), b',');
        assert_eq!(detect_delimiter(b"user_id"), b',');
    }
}
