//! The limits of the services a spec value reaches, checked before anything runs.
//!
//! A value that passes validation must be accepted by every service it is sent to:
//! a tag value by S3, IAM and ElastiCache, a display name by PostgreSQL (in a comment)
//! and Grafana, an e-mail address by the mail server. Each function returns why a
//! value is refused, as a sentence that does not repeat the value (it may be long, or
//! hold characters a terminal would act on).

use std::sync::OnceLock;

use super::diagnostic::is_unprintable;

/// AWS: tag keys up to 128 characters, values up to 256 (IAM, S3 and ElastiCache alike).
pub const AWS_TAG_KEY_MAX: usize = 128;
/// The longest AWS tag value.
pub const AWS_TAG_VALUE_MAX: usize = 256;

/// PostgreSQL identifiers are cut at 63 bytes (NAMEDATALEN - 1).
pub const POSTGRES_NAME_MAX: usize = 63;

/// The characters AWS allows in tag keys and values: `\p{L}\p{Z}\p{N}_.:/=+\-@`.
fn aws_tag_chars() -> &'static [(char, char)] {
    static RANGES: OnceLock<Vec<(char, char)>> = OnceLock::new();
    RANGES.get_or_init(|| {
        let hir = regex_syntax::Parser::new()
            .parse(r"[\p{L}\p{Z}\p{N}_.:/=+\-@]")
            .expect("a valid character class");
        match hir.kind() {
            regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(class)) => class
                .ranges()
                .iter()
                .map(|r| (r.start(), r.end()))
                .collect(),
            other => unreachable!("a Unicode class, not {other:?}"),
        }
    })
}

fn is_aws_tag_char(c: char) -> bool {
    let ranges = aws_tag_chars();
    let i = ranges.partition_point(|&(_, end)| end < c);
    ranges.get(i).is_some_and(|&(start, _)| start <= c)
}

/// The first character of `s` that AWS refuses in a tag, described for a message.
fn first_refused_tag_char(s: &str) -> Option<String> {
    s.chars()
        .find(|c| !is_aws_tag_char(*c))
        .map(|c| format!("{:?}", c.escape_default().to_string()))
}

/// Why AWS would refuse `s` as a tag value.
pub fn aws_tag_value_problem(s: &str) -> Option<String> {
    let n = s.chars().count();
    if n > AWS_TAG_VALUE_MAX {
        return Some(format!(
            "is {n} characters long; AWS takes tag values of up to {AWS_TAG_VALUE_MAX}"
        ));
    }
    first_refused_tag_char(s).map(|c| {
        format!(
            "contains {c}, which AWS refuses in a tag value (allowed: letters, digits, spaces and _ . : / = + - @)"
        )
    })
}

/// Why AWS would refuse `s` as a tag key.
pub fn aws_tag_key_problem(s: &str) -> Option<String> {
    let n = s.chars().count();
    if n == 0 {
        return Some("is empty".into());
    }
    if n > AWS_TAG_KEY_MAX {
        return Some(format!(
            "is {n} characters long; AWS takes tag keys of up to {AWS_TAG_KEY_MAX}"
        ));
    }
    if s.to_ascii_lowercase().starts_with("aws:") {
        return Some("starts with \"aws:\", which AWS keeps for itself".into());
    }
    first_refused_tag_char(s).map(|c| {
        format!(
            "contains {c}, which AWS refuses in a tag key (allowed: letters, digits, spaces and _ . : / = + - @)"
        )
    })
}

/// Why `s` cannot be stored as text (PostgreSQL refuses NUL in any string) or shown on
/// a terminal: it holds a control or bidirectional formatting character.
pub fn text_problem(s: &str) -> Option<String> {
    s.chars().find(|c| is_unprintable(*c)).map(|c| {
        format!(
            "contains the control character {:?}; PostgreSQL refuses NUL in text and terminals act on the others",
            c.escape_default().to_string()
        )
    })
}

/// Why `s` is not a plain e-mail address a mail server accepts (RFC 5321 limits: 64
/// characters before the `@`, 254 in all). The domain has a dot, or is `localhost`.
pub fn email_problem(s: &str) -> Option<String> {
    if let Some(p) = text_problem(s) {
        return Some(p);
    }
    if s.len() > 254 {
        return Some(format!(
            "is {} characters long; an address has at most 254",
            s.len()
        ));
    }
    let plain = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && (domain.contains('.') || domain == "localhost")
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && !domain.contains('@')
                && !s.contains(|c: char| c.is_whitespace() || "<>()[],;:\"\\".contains(c))
        }
        None => false,
    };
    (!plain).then(|| "is not an email address".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_tag_values_follow_awss_rules() {
        for ok in ["CC-RETAIL-042", "Équipe 7", "a/b=c+d@e:f_g.h", "数据", ""] {
            assert_eq!(aws_tag_value_problem(ok), None, "{ok}");
        }
        assert!(aws_tag_value_problem("a\0b").unwrap().contains("\\\\u{0}"));
        assert!(aws_tag_value_problem("a;b").is_some());
        assert!(aws_tag_value_problem("a\"b").is_some());
        assert!(aws_tag_value_problem(&"x".repeat(256)).is_none());
        assert!(
            aws_tag_value_problem(&"x".repeat(257))
                .unwrap()
                .contains("257 characters")
        );
        // Characters, not bytes: 256 two-byte letters fit.
        assert!(aws_tag_value_problem(&"é".repeat(256)).is_none());
    }

    #[test]
    fn aws_tag_keys_follow_awss_rules() {
        assert_eq!(aws_tag_key_problem("ManagedBy"), None);
        assert!(aws_tag_key_problem("").is_some());
        assert!(aws_tag_key_problem("aws:x").is_some());
        assert!(aws_tag_key_problem(&"k".repeat(129)).is_some());
        assert!(aws_tag_key_problem("a{b}").is_some());
    }

    #[test]
    fn text_and_email_checks() {
        assert_eq!(text_problem("Retail Chain"), None);
        assert!(text_problem("a\0b").is_some());
        assert!(text_problem("a\u{1b}[31m").is_some());
        assert!(text_problem("a\u{202E}b").is_some());
        assert_eq!(email_problem("ops@retail.example"), None);
        assert_eq!(email_problem("tenantform@localhost"), None);
        for bad in [
            "a@b", "@b.co", "a b@c.co", "a@b@c.co", "a@b..co", "a\0@b.co", "<a>@b.co",
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
        assert!(email_problem(&format!("{}@b.co", "a".repeat(65))).is_some());
    }
}
