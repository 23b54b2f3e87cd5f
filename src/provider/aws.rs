//! What the AWS providers ([`super::s3`], [`super::iam`], [`super::elasticache`])
//! share beyond the clients of [`crate::connect::aws`] (and its [`call`], one SDK call
//! under the retry policy): "not found" across services, policy documents with the account id put in
//! and taken out, tag changes, and the tag that carries a create's token.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::ProviderError;
pub use crate::connect::aws::call;
use crate::connect::retry::RetryPolicy;
pub use crate::resource::iam::with_account;
use crate::resource::iam::{ACCOUNT_PLACEHOLDER, map_strings};
use crate::resource::{Attributes, CreateToken, tags_of};

/// Retries for IAM's eventual consistency: a role or policy just created may be
/// unknown to other services (and to IAM itself) for some seconds.
pub const PROPAGATION: RetryPolicy = RetryPolicy {
    attempts: 12,
    base_delay: Duration::from_millis(500),
    max_delay: Duration::from_secs(8),
    attempt_timeout: Duration::from_secs(30),
};

/// Error codes that mean "it does not exist", across S3, IAM and ElastiCache.
const NOT_FOUND_CODES: &[&str] = &[
    "NoSuchBucket",
    "NotFound",
    "NoSuchEntity",
    "CacheClusterNotFound",
    "NoSuchLifecycleConfiguration",
    "NoSuchTagSet",
    "NoSuchTagSetError",
    "NoSuchBucketPolicy",
    "NoSuchPublicAccessBlockConfiguration",
    "HTTP 404",
];

/// Whether an error's code says the thing asked about does not exist.
pub fn is_not_found(code: &str) -> bool {
    NOT_FOUND_CODES.contains(&code)
}

/// `value` with `account` in ARNs (`arn:PARTITION:SERVICE:REGION:ACCOUNT:...`, an
/// IAM role's or a secret's) replaced by [`ACCOUNT_PLACEHOLDER`]: the inverse of
/// [`with_account`] for what AWS returns.
pub fn without_account(value: &Value, account: &str) -> Value {
    map_strings(value, &|s| {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", partition, service, region, a, rest] if *a == account => {
                format!("arn:{partition}:{service}:{region}:{ACCOUNT_PLACEHOLDER}:{rest}")
            }
            _ => s.to_owned(),
        }
    })
}

/// The tag that carries a create's [`CreateToken`]: on IAM roles and policies and
/// ElastiCache clusters it is written in the creating call, so it is on the object from
/// its first instant; on an S3 bucket it is the first thing set after CreateBucket. An
/// object of the resource's name
/// without it (or with another create's) is not this create's. It is not one of the
/// resource's tags: reads leave it out, and IAM and ElastiCache tag updates never
/// remove it (S3's tagging is replaced whole, so a bucket's first tag update drops it,
/// long after its create was confirmed).
pub const CREATE_TOKEN_TAG: &str = "tenantform:create-token";

/// `tags` as the resource's `tags` attribute sees them: without [`CREATE_TOKEN_TAG`].
pub fn resource_tags<K, V>(tags: impl IntoIterator<Item = (K, V)>) -> BTreeMap<String, String>
where
    K: Into<String>,
    V: Into<String>,
{
    tags.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .filter(|(k, _)| k != CREATE_TOKEN_TAG)
        .collect()
}

/// The create token among `tags`, if one is there and well formed.
pub fn create_token_in<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<CreateToken> {
    tags.into_iter()
        .find(|(k, _)| *k == CREATE_TOKEN_TAG)
        .and_then(|(_, v)| v.parse().ok())
}

/// The tags a creating call writes: the resource's, and the create's token.
pub fn tags_with_token(attrs: &Attributes, token: CreateToken) -> BTreeMap<String, String> {
    let mut tags = tags_of(attrs);
    tags.insert(CREATE_TOKEN_TAG.to_owned(), token.to_string());
    tags
}

/// What to change to turn the tags `have` into `want`: tags to set, keys to remove.
pub fn tag_changes(
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let set = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    (set, remove)
}

/// A policy document attribute as the JSON text AWS takes, with the account id in.
pub fn policy_text(attrs: &Attributes, name: &str, account: &str) -> Result<String, ProviderError> {
    let doc = attrs.get(name).ok_or_else(|| {
        ProviderError::Config(format!("attribute {name} (a policy document) is missing"))
    })?;
    let doc = match doc {
        Value::String(s) => serde_json::from_str(s).map_err(|e| {
            ProviderError::Config(format!(
                "attribute {name} is not a JSON policy document: {e}"
            ))
        })?,
        other => other.clone(),
    };
    Ok(with_account(&doc, account).to_string())
}

/// A policy document as AWS returned it (JSON text, sometimes URL-encoded), with the
/// account id taken out again.
pub fn policy_value(text: &str, account: &str) -> Value {
    let decoded;
    let text = if text.trim_start().starts_with('{') {
        text
    } else {
        decoded = percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned();
        &decoded
    };
    match serde_json::from_str::<Value>(text) {
        Ok(v) => without_account(&v, account),
        Err(_) => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_account_id_goes_in_and_comes_out_again() {
        let doc = json!({"Principal": {"AWS": "arn:aws:iam::{aws_account_id}:role/r"},
                         "Resource": "arn:aws:s3:::b"});
        let real = with_account(&doc, "123456789012");
        assert_eq!(real["Principal"]["AWS"], "arn:aws:iam::123456789012:role/r");
        assert_eq!(without_account(&real, "123456789012"), doc);
        let secret = json!([
            "arn:aws:secretsmanager:eu-west-1:{aws_account_id}:secret:s-??????",
            "arn:aws:s3:::123456789012",
            "123456789012"
        ]);
        let real = with_account(&secret, "123456789012");
        assert_eq!(
            real[0],
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s-??????"
        );
        assert_eq!(without_account(&real, "123456789012"), secret);
    }

    #[test]
    fn url_encoded_documents_are_decoded_and_junk_is_kept() {
        let v = policy_value("%7B%22Version%22%3A%222012-10-17%22%7D", "1");
        assert_eq!(v, json!({"Version": "2012-10-17"}));
        assert_eq!(policy_value("not json", "1"), json!("not json"));
    }

    #[test]
    fn the_create_token_tag_is_written_found_and_left_out_of_the_resource_tags() {
        let token = CreateToken::issue();
        let attrs = Attributes::from([("tags".into(), json!({"TenantID": "a"}))]);
        let written = tags_with_token(&attrs, token);
        assert_eq!(written.len(), 2);
        let pairs = written.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        assert_eq!(create_token_in(pairs), Some(token));
        assert_eq!(
            resource_tags(written.clone()),
            BTreeMap::from([("TenantID".to_owned(), "a".to_owned())])
        );
        assert_eq!(create_token_in([("TenantID", "a")]), None);
        assert_eq!(create_token_in([(CREATE_TOKEN_TAG, "not a uuid")]), None);
    }

    #[test]
    fn tag_changes_set_the_different_and_remove_the_extra() {
        let want = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]);
        let have = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("c".to_owned(), "3".to_owned()),
        ]);
        let (set, remove) = tag_changes(&want, &have);
        assert_eq!(set, BTreeMap::from([("b".to_owned(), "2".to_owned())]));
        assert_eq!(remove, vec!["c".to_owned()]);
    }
}
