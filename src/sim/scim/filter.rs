//! The parts of SCIM's filter and PATCH-path grammar (RFC 7644 §3.4.2.2,
//! §3.5.2) the simulator understands: one attribute compared with `eq` to a
//! string, optionally inside a value filter (`members[value eq "…"]`).
//!
//! Anything else parses to `None`, which the handlers answer with the
//! vendor-neutral RFC errors (`invalidFilter`, `invalidPath`). Attribute
//! names are case-insensitive, so they come back lower-cased, with any
//! schema URN prefix removed.

/// `attribute eq "value"`; a value filter yields `members.value`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Comparison {
    pub attribute: String,
    pub value: String,
}

/// A PATCH operation's `path`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PatchPath {
    /// A plain attribute, e.g. `members`, `active`, `name.givenName`.
    Attribute(String),
    /// `attribute[sub eq "value"]`, with nothing after the bracket.
    Filtered {
        attribute: String,
        sub: String,
        value: String,
    },
}

pub(super) fn parse_filter(text: &str) -> Option<Comparison> {
    let mut cursor = Cursor { text, pos: 0 };
    let attribute = cursor.attribute()?;
    let (attribute, value) = if cursor.eat('[') {
        let (sub, value) = cursor.comparison()?;
        cursor.expect(']')?;
        (format!("{attribute}.{sub}"), value)
    } else {
        cursor.eq()?;
        (attribute, cursor.string()?)
    };
    cursor.end()?;
    Some(Comparison { attribute, value })
}

pub(super) fn parse_path(text: &str) -> Option<PatchPath> {
    let mut cursor = Cursor { text, pos: 0 };
    let attribute = cursor.attribute()?;
    if !cursor.eat('[') {
        cursor.end()?;
        return Some(PatchPath::Attribute(attribute));
    }
    let (sub, value) = cursor.comparison()?;
    cursor.expect(']')?;
    cursor.end()?;
    Some(PatchPath::Filtered {
        attribute,
        sub,
        value,
    })
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Up to the next space or bracket or quote.
    fn word(&mut self) -> &str {
        self.skip_spaces();
        let start = self.pos;
        let rest = &self.text[start..];
        let len = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '"'))
            .unwrap_or(rest.len());
        self.pos += len;
        &self.text[start..start + len]
    }

    /// An attribute path, lower-cased, with any schema URN prefix removed.
    fn attribute(&mut self) -> Option<String> {
        let word = self.word();
        let is_urn = word
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
        let name = if is_urn {
            word.rsplit(':').next()?
        } else {
            word
        };
        let valid_part = |part: &str| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
        };
        let parts: Vec<&str> = name.split('.').collect();
        (parts.len() <= 2 && parts.iter().all(|p| valid_part(p))).then(|| name.to_ascii_lowercase())
    }

    fn eq(&mut self) -> Option<()> {
        self.word().eq_ignore_ascii_case("eq").then_some(())
    }

    /// `sub eq "value"` inside a value filter.
    fn comparison(&mut self) -> Option<(String, String)> {
        let sub = self.attribute()?;
        self.eq()?;
        Some((sub, self.string()?))
    }

    /// A JSON string literal, escapes and all.
    fn string(&mut self) -> Option<String> {
        self.skip_spaces();
        let bytes = self.rest().as_bytes();
        if bytes.first() != Some(&b'"') {
            return None;
        }
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    let literal = &self.rest()[..=i];
                    let value = serde_json::from_str::<String>(literal).ok()?;
                    self.pos += i + 1;
                    return Some(value);
                }
                _ => i += 1,
            }
        }
        None
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn end(&mut self) -> Option<()> {
        self.skip_spaces();
        self.rest().is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Comparison, PatchPath, parse_filter, parse_path};

    fn eq(attribute: &str, value: &str) -> Option<Comparison> {
        Some(Comparison {
            attribute: attribute.into(),
            value: value.into(),
        })
    }

    #[test]
    fn filters_parse_the_supported_forms_only() {
        assert_eq!(
            parse_filter(r#"userName eq "a@b.example""#),
            eq("username", "a@b.example")
        );
        assert_eq!(
            parse_filter(r#" USERNAME Eq "say \"hi\"" "#),
            eq("username", "say \"hi\"")
        );
        assert_eq!(
            parse_filter(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x""#),
            eq("username", "x")
        );
        assert_eq!(
            parse_filter(r#"members[value eq "u-1"]"#),
            eq("members.value", "u-1")
        );
        assert_eq!(
            parse_filter(r#"members.value eq "u 1""#),
            eq("members.value", "u 1")
        );
        for bad in [
            "",
            r#"userName co "x""#,
            r#"userName eq x"#,
            r#"userName eq "x" and active eq true"#,
            r#"userName eq "x"#,
            r#"members[value eq "x""#,
            r#"active eq true"#,
            r#"a.b.c eq "x""#,
            r#"1bad eq "x""#,
            "userName eq \"\\",
            "aéé eq \"x\"",
            "ééé:x eq \"x\"",
        ] {
            assert_eq!(parse_filter(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_parse_plain_and_filtered_attributes() {
        assert_eq!(
            parse_path("members"),
            Some(PatchPath::Attribute("members".into()))
        );
        assert_eq!(
            parse_path(r#"members[value eq "u-1"]"#),
            Some(PatchPath::Filtered {
                attribute: "members".into(),
                sub: "value".into(),
                value: "u-1".into()
            })
        );
        assert_eq!(parse_path(r#"members[value eq "u-1"].display"#), None);
        assert_eq!(parse_path("emails[type"), None);
    }
}
