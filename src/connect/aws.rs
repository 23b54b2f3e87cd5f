//! AWS: how the engine reaches it ([`AwsEndpoint`], the connection part of `[aws]` in
//! platform.toml), the SDK clients built once and shared ([`AwsClients`]), tenants'
//! application roles taken on for checks ([`AssumedRole`]), the mapping of SDK errors
//! to [`ServiceError`], and the workarounds for moto, the local AWS endpoint of the
//! tests ([`moto_quirks`]).
//!
//! Credentials always come from the standard AWS chain (environment, profile, instance
//! role); the endpoint settings may set the endpoint, the region of the global
//! services and a profile. The SDK's own retries are off: [`super::retry`] retries
//! with backoff and jitter, as for every other service, and every call has a timeout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::ServiceError;
use super::retry::RetryPolicy;

/// Where AWS (or an AWS-compatible endpoint) is. Every field is optional: what is not
/// set here comes from the standard chain (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_PROFILE`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsEndpoint {
    /// Send every AWS call here instead of to AWS (moto, LocalStack, MinIO for S3).
    pub endpoint_url: Option<String>,
    /// The region of global services (IAM, STS).
    pub region: Option<String>,
    /// A named profile of the shared AWS config files.
    pub profile: Option<String>,
}

/// Error codes of throttling, which is always worth another try.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
];

/// Maps an SDK error to a service error carrying the AWS error code (or `HTTP nnn`
/// when the answer had none). Throttling and 5xx answers are retryable.
pub fn sdk_error<E>(service: &'static str, e: SdkError<E, HttpResponse>) -> ServiceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::TimeoutError(_) => ServiceError::Timeout {
            service,
            timeout: ATTEMPT_TIMEOUT,
        },
        SdkError::DispatchFailure(d) => {
            let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            if d.is_timeout() {
                ServiceError::Timeout {
                    service,
                    timeout: ATTEMPT_TIMEOUT,
                }
            } else {
                ServiceError::Unreachable { service, detail }
            }
        }
        SdkError::ConstructionFailure(_) => ServiceError::Config(format!(
            "{service} request could not be built: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )),
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            ServiceError::Api {
                service,
                code: format!("HTTP {status}"),
                message: format!(
                    "unreadable answer: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                ),
                retryable: status >= 500,
            }
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            // The SDK reads the code of well-formed answers; an answer in another
            // layout keeps it in the body (moto's refusals of a bad signature).
            let unparsed = match e.code() {
                Some(_) => None,
                None => s
                    .raw()
                    .body()
                    .bytes()
                    .and_then(moto_quirks::error_from_unparsed_body),
            };
            let (code, message) = match unparsed {
                Some((code, message)) => (Some(code), message),
                None => (e.code().map(str::to_owned), e.message().map(str::to_owned)),
            };
            let code = code.unwrap_or_else(|| format!("HTTP {status}"));
            let message = message.unwrap_or_else(|| format!("HTTP status {status}"));
            let retryable =
                status >= 500 || status == 429 || THROTTLING_CODES.contains(&code.as_str());
            ServiceError::Api {
                service,
                code,
                message,
                retryable,
            }
        }
        _ => ServiceError::Unreachable {
            service,
            detail: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        },
    }
}

/// One AWS operation under `retry`: `send` builds and sends the request afresh for
/// every attempt, and its SDK error becomes a [`ServiceError`] of `service`.
pub async fn call<T, E, F, Fut>(
    retry: &RetryPolicy,
    service: &'static str,
    mut send: F,
) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    retry
        .run(service, || {
            // An SDK operation's future is tens of kilobytes: boxed, it does not grow
            // every future that awaits a call (a read awaits several), nor the stack
            // of the thread polling them.
            let sent = Box::pin(send());
            async move { sent.await.map_err(|e| sdk_error(service, e)) }
        })
        .await
}

/// `GetBucketLocation`'s answer as a region name (it says nothing for us-east-1 and
/// `EU` for the oldest buckets of eu-west-1).
pub fn location_region(constraint: Option<&aws_sdk_s3::types::BucketLocationConstraint>) -> String {
    match constraint.map(|c| c.as_str()) {
        None | Some("") => "us-east-1".into(),
        Some("EU") => "eu-west-1".into(),
        Some(r) => r.into(),
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The SDK configuration and the clients built from it, shared by the AWS providers
/// and the validation checks.
pub struct AwsClients {
    base: aws_config::SdkConfig,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    s3: Mutex<HashMap<String, aws_sdk_s3::Client>>,
    elasticache: Mutex<HashMap<String, aws_sdk_elasticache::Client>>,
    kms: Mutex<HashMap<String, aws_sdk_kms::Client>>,
    secrets: Mutex<HashMap<String, aws_sdk_secretsmanager::Client>>,
    caller: tokio::sync::OnceCell<CallerIdentity>,
}

impl std::fmt::Debug for AwsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsClients")
            .field("endpoint_url", &self.base.endpoint_url())
            .field("region", &self.base.region())
            .finish_non_exhaustive()
    }
}

impl AwsClients {
    /// Loads the SDK configuration: `endpoint` first, then the standard chain.
    pub async fn load(endpoint: impl Into<AwsEndpoint>) -> Self {
        let settings = endpoint.into();
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        Self::new(loader.load().await)
    }

    /// Clients from an SDK configuration made elsewhere (a library user's own, with
    /// its credentials and endpoint). Retries and timeouts are set here whatever it
    /// says: [`super::retry`] does the retrying.
    pub fn new(base: aws_config::SdkConfig) -> Self {
        let has_region = base.region().is_some();
        let mut builder = base
            .into_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if !has_region {
            // IAM and STS are global; any region reaches them.
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        let base = builder.build();
        AwsClients {
            iam: aws_sdk_iam::Client::new(&base),
            sts: aws_sdk_sts::Client::new(&base),
            base,
            s3: Mutex::new(HashMap::new()),
            elasticache: Mutex::new(HashMap::new()),
            kms: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
            caller: tokio::sync::OnceCell::new(),
        }
    }

    /// The IAM client.
    pub fn iam(&self) -> &aws_sdk_iam::Client {
        &self.iam
    }

    /// An S3 client for buckets in `region`. Path-style addressing, so that an
    /// endpoint override on an IP address or `localhost` works.
    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        let mut clients = self.s3.lock().expect("client cache lock");
        clients
            .entry(region.to_owned())
            .or_insert_with(|| s3_client(&self.base, region))
            .clone()
    }

    /// An ElastiCache client for `region`.
    pub fn elasticache(&self, region: &str) -> aws_sdk_elasticache::Client {
        let mut clients = self.elasticache.lock().expect("client cache lock");
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let config = aws_sdk_elasticache::config::Builder::from(&self.base)
                    .region(aws_sdk_elasticache::config::Region::new(region.to_owned()))
                    .build();
                aws_sdk_elasticache::Client::from_conf(config)
            })
            .clone()
    }

    /// A Secrets Manager client for secrets in `region`.
    pub fn secrets(&self, region: &str) -> aws_sdk_secretsmanager::Client {
        let mut clients = self.secrets.lock().expect("client cache lock");
        clients
            .entry(region.to_owned())
            .or_insert_with(|| secrets_client(&self.base, region))
            .clone()
    }

    /// A KMS client for keys in `region`, or in the configured region when `None`.
    pub fn kms(&self, region: Option<&str>) -> aws_sdk_kms::Client {
        let mut clients = self.kms.lock().expect("client cache lock");
        clients
            .entry(region.unwrap_or_default().to_owned())
            .or_insert_with(|| {
                let mut config = aws_sdk_kms::config::Builder::from(&self.base);
                if let Some(region) = region {
                    config = config.region(aws_sdk_kms::config::Region::new(region.to_owned()));
                }
                aws_sdk_kms::Client::from_conf(config.build())
            })
            .clone()
    }

    /// Whether AWS takes the credentials (STS GetCallerIdentity, which any valid
    /// credentials may call): the check before an apply's first change.
    pub async fn check_credentials(&self) -> Result<(), ServiceError> {
        use aws_sdk_s3::config::ProvideCredentials;
        let missing = |detail: String| {
            ServiceError::Config(format!(
                "no AWS credentials ({detail}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or `profile` in [aws] of platform.toml"
            ))
        };
        let provider = self
            .base
            .credentials_provider()
            .ok_or_else(|| missing("no credential source is configured".into()))?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| missing(e.to_string()))?;
        self.caller().await.map(|_| ())
    }

    /// The account the credentials belong to (STS GetCallerIdentity, asked once).
    pub async fn account_id(&self) -> Result<&str, ServiceError> {
        Ok(&self.caller().await?.account)
    }

    /// The ARN of the principal the credentials belong to (an IAM user, or an assumed
    /// role's session), for naming it in `trusted_principals`.
    pub async fn caller_arn(&self) -> Result<&str, ServiceError> {
        Ok(&self.caller().await?.arn)
    }

    async fn caller(&self) -> Result<&CallerIdentity, ServiceError> {
        self.caller
            .get_or_try_init(|| async {
                RetryPolicy::DEFAULT
                    .run("STS", || async {
                        let out = self
                            .sts
                            .get_caller_identity()
                            .send()
                            .await
                            .map_err(|e| sdk_error("STS", e))?;
                        let missing = |what: &str| {
                            ServiceError::Config(format!(
                                "STS GetCallerIdentity returned no {what}"
                            ))
                        };
                        Ok(CallerIdentity {
                            account: out
                                .account()
                                .ok_or_else(|| missing("account id"))?
                                .to_owned(),
                            arn: out.arn().ok_or_else(|| missing("ARN"))?.to_owned(),
                        })
                    })
                    .await
            })
            .await
    }

    /// The bytes of object `key` in `bucket`, asked of the bucket's own region (a file
    /// kept in S3, such as a Terraform state; not a tenant's resource).
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, ServiceError> {
        let home = self
            .base
            .region()
            .map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
        let location = call(&RetryPolicy::DEFAULT, "S3", || {
            self.s3(&home).get_bucket_location().bucket(bucket).send()
        })
        .await?;
        let region = location_region(location.location_constraint());
        RetryPolicy::DEFAULT
            .run("S3", || async {
                let out = self
                    .s3(&region)
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| sdk_error("S3", e))?;
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| ServiceError::Unreachable {
                        service: "S3",
                        detail: e.to_string(),
                    })?;
                Ok(body.into_bytes().to_vec())
            })
            .await
    }

    /// Takes on a tenant's application role (STS AssumeRole with the engine's
    /// credentials), for checks that must run with the tenant's own permissions and
    /// no more: S3 put/get/delete in its bucket, and a refusal in another tenant's.
    ///
    /// The role's trust policy must name the engine's principal: put its ARN (see
    /// [`AwsClients::caller_arn`]) in `trusted_principals` of `[aws]` in
    /// platform.toml. `session_name` shows in the session's ARN and in CloudTrail
    /// (2 to 64 of letters, digits and `+=,.@-`). A role created a moment ago may not
    /// be assumable yet (IAM's eventual consistency): `AccessDenied` is retried for
    /// about ten seconds before it is returned.
    ///
    /// The credentials last an hour (STS's default) and are not renewed.
    pub async fn assume_tenant_role(
        &self,
        role_arn: &str,
        session_name: &str,
    ) -> Result<AssumedRole, ServiceError> {
        let out = ASSUME_ROLE
            .run("STS", || async {
                self.sts
                    .assume_role()
                    .role_arn(role_arn)
                    .role_session_name(session_name)
                    .send()
                    .await
                    .map_err(|e| {
                        let e = sdk_error("STS", e);
                        if e.code() == "AccessDenied" {
                            e.into_retryable()
                        } else {
                            e
                        }
                    })
            })
            .await?;
        let no_credentials = || {
            ServiceError::Config(format!(
                "STS AssumeRole of {role_arn} returned no credentials"
            ))
        };
        let creds = out.credentials().ok_or_else(no_credentials)?;
        let expires_at = std::time::SystemTime::try_from(*creds.expiration()).ok();
        let credentials = aws_sdk_s3::config::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            expires_at,
            "tenantform-assume-role",
        );
        let config = self
            .base
            .to_builder()
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                credentials,
            ))
            .build();
        let session_arn = out
            .assumed_role_user()
            .map(|u| u.arn().to_owned())
            .unwrap_or_default();
        Ok(AssumedRole {
            config,
            session_arn,
            expires_at,
        })
    }
}

/// Retries of AssumeRole: throttling and IAM's eventual consistency (a new role, or a
/// new trust policy, not yet visible to STS), but no longer than about ten seconds,
/// because a trust policy that does not name the caller is refused the same way.
const ASSUME_ROLE: RetryPolicy = RetryPolicy {
    attempts: 6,
    base_delay: Duration::from_millis(500),
    max_delay: Duration::from_secs(4),
    attempt_timeout: ATTEMPT_TIMEOUT,
};

struct CallerIdentity {
    account: String,
    arn: String,
}

/// A tenant role's temporary credentials (from [`AwsClients::assume_tenant_role`]),
/// with the engine's endpoint, timeouts and retry settings.
#[derive(Clone)]
pub struct AssumedRole {
    config: aws_config::SdkConfig,
    session_arn: String,
    expires_at: Option<std::time::SystemTime>,
}

impl std::fmt::Debug for AssumedRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumedRole")
            .field("session_arn", &self.session_arn)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl AssumedRole {
    /// An S3 client for buckets in `region` with the role's credentials, set up as the
    /// engine's own ([`AwsClients::s3`]): path-style, same endpoint and checksums.
    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        s3_client(&self.config, region)
    }

    /// A Secrets Manager client for secrets in `region` with the role's credentials.
    pub fn secrets(&self, region: &str) -> aws_sdk_secretsmanager::Client {
        secrets_client(&self.config, region)
    }

    /// The string value of secret `name` in `region`, read with the role's credentials.
    pub async fn secret_string(&self, region: &str, name: &str) -> Result<String, ServiceError> {
        let client = self.secrets(region);
        let out = call(&RetryPolicy::DEFAULT, "Secrets Manager", || {
            client.get_secret_value().secret_id(name).send()
        })
        .await?;
        out.secret_string()
            .map(str::to_owned)
            .ok_or_else(|| ServiceError::Config(format!("secret {name:?} holds no string value")))
    }

    /// The SDK configuration with the role's credentials, for clients of other services.
    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.config
    }

    /// The session's ARN: `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub fn session_arn(&self) -> &str {
        &self.session_arn
    }

    /// When the credentials stop working.
    pub fn expires_at(&self) -> Option<std::time::SystemTime> {
        self.expires_at
    }
}

/// A Secrets Manager client of `base` for secrets in `region`.
fn secrets_client(base: &aws_config::SdkConfig, region: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::config::Builder::from(base)
        .region(aws_sdk_secretsmanager::config::Region::new(
            region.to_owned(),
        ))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// An S3 client of `base` for buckets in `region`: path-style addressing (an endpoint
/// on an IP address or `localhost` has no bucket subdomains), and checksums only where
/// S3 requires them, which S3-compatible servers also accept.
fn s3_client(base: &aws_config::SdkConfig, region: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let config = aws_sdk_s3::config::Builder::from(base)
        .region(aws_sdk_s3::config::Region::new(region.to_owned()))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Workarounds for moto_server, the local AWS endpoint of the tests. Each says what it
/// works around and why it is harmless against AWS itself.
pub mod moto_quirks {
    /// moto 5.2 answers GetBucketVersioning with the XML root
    /// `GetBucketVersioningResponse` instead of `VersioningConfiguration`, so the SDK
    /// fails to parse a 200 answer. This reads the status out of the raw body of such
    /// an answer. AWS answers correctly, so this is never reached there.
    pub fn versioning_status_from_unparsed_body(status: u16, body: &[u8]) -> Option<String> {
        if status != 200 {
            return None;
        }
        let body = std::str::from_utf8(body).ok()?;
        if !body.contains("GetBucketVersioningResponse") {
            return None;
        }
        let status = body
            .split_once("<Status>")
            .and_then(|(_, rest)| rest.split_once("</Status>"))
            .map(|(s, _)| s.trim().to_owned());
        // No <Status>: versioning was never enabled.
        Some(status.unwrap_or_default())
    }

    /// moto answers a request it refuses before reaching the service (a bad signature,
    /// an unknown access key) in the EC2 error layout,
    /// `<ErrorResponse><Errors><Error><Code>…`, which the SDK's Query-protocol parser
    /// does not read, so the code (`SignatureDoesNotMatch`) would be lost. This reads
    /// the code and message out of the raw body. AWS answers in the layout the SDK
    /// reads, so this is reached only when the SDK found no code.
    pub fn error_from_unparsed_body(body: &[u8]) -> Option<(String, Option<String>)> {
        let body = std::str::from_utf8(body).ok()?;
        let element = |name: &str| {
            let open = format!("<{name}>");
            let close = format!("</{name}>");
            body.split_once(open.as_str())
                .and_then(|(_, rest)| rest.split_once(close.as_str()))
                .map(|(v, _)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Some((element("Code")?, element("Message")))
    }

    /// A deleted ElastiCache cluster stays listed as `deleting` for minutes on AWS (for
    /// ever in moto 5.2 unpatched), its id taken. It is past saving: nothing can use
    /// it, and its deletion cannot be stopped, so "gone" is the right answer; only a
    /// create of the same id has to wait for it.
    pub fn cluster_status_means_gone(status: &str) -> bool {
        status.eq_ignore_ascii_case("deleting") || status.eq_ignore_ascii_case("deleted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_locations_name_regions() {
        use aws_sdk_s3::types::BucketLocationConstraint;
        assert_eq!(location_region(None), "us-east-1");
        assert_eq!(
            location_region(Some(&BucketLocationConstraint::from("EU"))),
            "eu-west-1"
        );
        assert_eq!(
            location_region(Some(&BucketLocationConstraint::from("ap-south-1"))),
            "ap-south-1"
        );
    }

    #[test]
    fn error_codes_in_the_ec2_layout_are_read_from_the_raw_body() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?>
<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message><Type>Sender</Type></Error></Errors></ErrorResponse>"#;
        assert_eq!(
            moto_quirks::error_from_unparsed_body(body),
            Some((
                "SignatureDoesNotMatch".to_owned(),
                Some("The request signature we calculated does not match".to_owned())
            ))
        );
        assert_eq!(
            moto_quirks::error_from_unparsed_body(b"<html>Forbidden</html>"),
            None
        );
        assert_eq!(
            moto_quirks::error_from_unparsed_body(b"<Code></Code>"),
            None
        );
        assert_eq!(moto_quirks::error_from_unparsed_body(b"\xff"), None);
    }

    #[test]
    fn moto_versioning_answers_are_read_from_the_raw_body() {
        let body = br#"<?xml version="1.0"?><GetBucketVersioningResponse xmlns="x"><Status>Enabled</Status></GetBucketVersioningResponse>"#;
        assert_eq!(
            moto_quirks::versioning_status_from_unparsed_body(200, body).as_deref(),
            Some("Enabled")
        );
        assert_eq!(
            moto_quirks::versioning_status_from_unparsed_body(
                200,
                b"<GetBucketVersioningResponse/>"
            )
            .as_deref(),
            Some("")
        );
        assert_eq!(
            moto_quirks::versioning_status_from_unparsed_body(500, body),
            None
        );
        assert_eq!(
            moto_quirks::versioning_status_from_unparsed_body(200, b"\xff"),
            None
        );
    }
}
