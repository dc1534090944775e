//! One CSV record's cells as intake reads them, before any connector checks
//! them, and the short quotes of untrusted cells that messages carry.

/// The cells of one record, trimmed; empty cells are `None`.
#[derive(Debug, Default, Clone)]
pub struct RowFields<'a> {
    pub user_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub organization_id: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub transfer_to_department_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub effective_at: Option<&'a str>,
}

/// Quotes of untrusted cells in messages stay short.
pub fn truncate(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}
