//! Envelope encryption of stored state and saved plans (`[encryption]` of platform.toml).
//!
//! Every write gets a fresh 256-bit data key; the record is sealed with AES-256-GCM
//! under it, and the data key is itself sealed (wrapped) by the key provider's key
//! encryption key (KEK). The `passphrase` provider derives the KEK from a passphrase
//! with PBKDF2-SHA512 (at least [`MIN_PASSPHRASE_CHARS`] characters and
//! [`MIN_ITERATIONS`] iterations, refused below). A process derives one KEK for its
//! writes (one random salt per process) and one per salt it reads, so a write costs one
//! AES-GCM seal, not a key derivation.
//!
//! The `aws_kms` provider gets its KEK from AWS KMS: one `GenerateDataKey` per process
//! that writes (the envelope keeps the KEK as KMS encrypted it), one `Decrypt` per
//! encrypted KEK a process reads, each with the encryption context
//! `{"tenantform": "key-encryption-key"}`. So KMS sees a few calls per process, not
//! one per record, and never sees a record. The store's code is synchronous; the KMS
//! calls run on a thread of their own, with a runtime of their own, so they can be
//! made from inside the caller's runtime.
//!
//! The stored record is a small JSON envelope, so a reader tells plain from encrypted by
//! its `kind`:
//!
//! ```text
//! { "kind": "tenantform-encrypted", "version": 1,
//!   "binding": { "content": "state", "tenant": "acme", "lineage": "…", "serial": 7 },
//!   "key_provider": "passphrase",
//!   "kdf": { "algorithm": "pbkdf2-sha512", "salt": "<base64>", "iterations": 600000 },
//!   "wrapped_key": "<base64 nonce | sealed data key>",
//!   "nonce": "<base64>", "ciphertext": "<base64 sealed record>" }
//! ```
//!
//! With `aws_kms`, `"kms": { "key_id": "alias/…", "encrypted_kek": "<base64>" }` takes
//! the place of `kdf`.
//!
//! The authenticated data of both seals is every field but the three sealed ones: the
//! binding (what the record is: state or plan; for state its tenant, lineage and
//! serial), the provider and the KDF parameters (or the KMS key and encrypted KEK).
//! Changing any of them, or any byte, makes the record unreadable. Readers compare the binding with what they expect
//! ([`Expected`]): the file name's or row's tenant, and in PostgreSQL the row's lineage
//! and serial; the local backend compares the serial with the highest it wrote (see
//! `LocalStore`), so a state of another tenant, or an older state of the same tenant put
//! in place of the newer one, is refused, never silently read.
//!
//! What a reader gets is the plain record; nothing here decides what a record means.

use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connect::ServiceError;
use crate::connect::aws::{AwsClients, AwsEndpoint, call};
use crate::connect::retry::RetryPolicy;
use crate::secret::Secret;
use crate::spec::{EncryptionSettings, KeyProviderKind};

/// What an encrypted record's `kind` says.
pub const ENVELOPE_KIND: &str = "tenantform-encrypted";
const ENVELOPE_VERSION: u32 = 1;
/// The shortest passphrase accepted (OpenTofu's minimum).
pub const MIN_PASSPHRASE_CHARS: usize = 16;
/// The fewest PBKDF2 iterations accepted (OpenTofu's minimum).
pub const MIN_ITERATIONS: u32 = 200_000;
const KDF_ALGORITHM: &str = "pbkdf2-sha512";
const KEY_LEN: usize = 32;
const SALT_LEN: usize = 16;
const PASSPHRASE: &str = "passphrase";
const AWS_KMS: &str = "aws_kms";
/// The encryption context of every KMS call: a KEK's ciphertext opens only as one.
const KMS_CONTEXT: (&str, &str) = ("tenantform", "key-encryption-key");
/// KMS error codes that say this key does not open this ciphertext (as opposed to KMS
/// not answering).
const KMS_KEY_REFUSALS: &[&str] = &[
    "InvalidCiphertextException",
    "IncorrectKeyException",
    "AccessDeniedException",
    "AccessDenied",
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "InvalidKeyUsageException",
];

/// What a sealed record is, authenticated with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `state` or `plan`.
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
}

impl Binding {
    /// The binding of version `serial` of `tenant`'s state of `lineage`: a sealed state
    /// opens only as that version.
    pub fn state(tenant: &str, lineage: Uuid, serial: u64) -> Self {
        Binding {
            content: "state".into(),
            tenant: Some(tenant.to_owned()),
            lineage: Some(lineage),
            serial: Some(serial),
        }
    }

    /// The binding of a saved plan (not tied to a tenant or serial).
    pub fn plan() -> Self {
        Binding {
            content: "plan".into(),
            tenant: None,
            lineage: None,
            serial: None,
        }
    }
}

/// What a reader knows the record must be; `None` fields are not known beforehand.
#[derive(Clone, Debug, Default)]
pub struct Expected<'a> {
    pub content: &'a str,
    pub tenant: Option<&'a str>,
    pub lineage: Option<Uuid>,
    pub serial: Option<u64>,
}

/// Why a record cannot be sealed or opened, or the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The `[encryption]` settings of platform.toml cannot be used.
    #[error("platform.toml [encryption]: {0}")]
    Config(String),
    /// A plain-text record was found while encryption is enforced; it was left untouched.
    #[error(
        "{what} is plain text, and platform.toml [encryption] enforced = true refuses plain text; it was left untouched: if it is a state of an earlier release, set enforced = false until `tenantform state rekey` has encrypted every tenant"
    )]
    PlainRefused { what: String },
    /// A record is encrypted, but no key of its provider is configured; it was left
    /// untouched.
    #[error(
        "{what} is encrypted (key provider {provider}), but platform.toml [encryption] configures no key of that provider to open it; it was left untouched: configure the key it was written with (as key_provider, or during a rotation as fallback_passphrase_env or fallback_kms_key_id)"
    )]
    NoKey { what: String, provider: String },
    /// A record cannot be opened with the configured key, or was altered; it was left untouched.
    #[error(
        "{what} cannot be decrypted with key provider {provider} ({keys}): either that key is not the one it was written with, or the record was altered (a byte, or the tenant, lineage or serial it is bound to); it was left untouched: configure the key it was written with (during a rotation, as fallback_passphrase_env or fallback_kms_key_id), or restore the record from a backup"
    )]
    WrongKey {
        what: String,
        provider: String,
        keys: String,
    },
    /// A record is bound to another tenant, lineage, serial or content than expected; it
    /// was left untouched.
    #[error(
        "{what} holds an encrypted {found}, not {expected}: a record was put in another's place (another tenant's, or an older state); it was left untouched: put back the right record (to go back to an older state, use `tenantform state rollback`, not a copy)"
    )]
    Misplaced {
        what: String,
        expected: String,
        found: String,
    },
    /// A record is not a readable encrypted record; it was left untouched.
    #[error(
        "{what} is not a readable encrypted record ({detail}); it was left untouched: restore it from a backup"
    )]
    Malformed { what: String, detail: String },
    /// A record names a key provider this build does not know; it was left untouched.
    #[error(
        "{what} is encrypted with key provider {found:?}, which this tenantform does not know; it was left untouched: use a newer tenantform"
    )]
    UnknownProvider { what: String, found: String },
    /// Encryption itself failed in the cryptographic library.
    #[error("cannot encrypt {what}: the system's cryptographic library failed")]
    Crypto { what: String },
    /// The key provider could not be asked (KMS unreachable, throttled, misconfigured);
    /// nothing was written.
    #[error(
        "cannot {action} {what}: key provider {provider} ({key}) failed: {detail}; nothing was written"
    )]
    Provider {
        action: &'static str,
        what: String,
        provider: &'static str,
        key: String,
        detail: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    salt: String,
    iterations: u32,
}

/// The KMS key and the KEK it encrypted, of an `aws_kms` envelope.
#[derive(Serialize, Deserialize)]
struct KmsWrap {
    key_id: String,
    encrypted_kek: String,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    kind: String,
    version: u32,
    binding: Binding,
    key_provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<Kdf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms: Option<KmsWrap>,
    wrapped_key: String,
    nonce: String,
    ciphertext: String,
}

impl Envelope {
    /// The authenticated data of both seals: everything that is not sealed. `None`
    /// when the provider's parameters are missing.
    fn aad(&self) -> Option<Vec<u8>> {
        let header = match (&self.kdf, &self.kms) {
            (Some(kdf), None) => serde_json::to_vec(&(
                &self.kind,
                self.version,
                &self.binding,
                &self.key_provider,
                &kdf.algorithm,
                &kdf.salt,
                kdf.iterations,
            )),
            (None, Some(kms)) => serde_json::to_vec(&(
                &self.kind,
                self.version,
                &self.binding,
                &self.key_provider,
                &kms.key_id,
                &kms.encrypted_kek,
            )),
            _ => return None,
        };
        Some(header.expect("envelope header serializes"))
    }
}

/// Which KEK: key index, salt, iterations.
type KekId = (usize, Vec<u8>, u32);

/// One configured key: a passphrase and where it came from, or a KMS key.
enum Key {
    Passphrase { env: String, passphrase: Secret },
    Kms { key_id: String },
}

impl Key {
    fn provider(&self) -> &'static str {
        match self {
            Key::Passphrase { .. } => PASSPHRASE,
            Key::Kms { .. } => AWS_KMS,
        }
    }

    /// The key as messages name it (never its value).
    fn describe(&self) -> String {
        match self {
            Key::Passphrase { env, .. } => format!("the passphrase in {env}"),
            Key::Kms { key_id } => format!("KMS key {key_id}"),
        }
    }
}

/// A KEK from KMS, and its ciphertext as KMS encrypted it.
struct KmsKek {
    kek: [u8; KEY_LEN],
    encrypted: Vec<u8>,
}

/// How records are sealed and opened: the configured keys (the primary first), whether
/// new writes are sealed, and whether plain text is refused. Cheap to share (`Arc`).
pub struct Encryption {
    keys: Vec<Key>,
    seals: bool,
    enforced: bool,
    iterations: u32,
    write_salt: [u8; SALT_LEN],
    /// KEKs derived so far, by (key index, salt, iterations).
    derived: Mutex<HashMap<KekId, [u8; KEY_LEN]>>,
    /// Where KMS is (`[aws]`).
    aws: AwsEndpoint,
    /// The KEK of this process's writes under a KMS primary, once asked for.
    kms_write: Mutex<Option<KmsKek>>,
    /// KEKs KMS decrypted so far, by their ciphertext.
    kms_opened: Mutex<HashMap<Vec<u8>, [u8; KEY_LEN]>>,
    random: SystemRandom,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field(
                "keys",
                &self.keys.iter().map(Key::describe).collect::<Vec<_>>(),
            )
            .field("seals", &self.seals)
            .field("enforced", &self.enforced)
            .finish_non_exhaustive()
    }
}

impl Encryption {
    /// No keys: records are written as plain text and encrypted ones cannot be read.
    pub fn plain() -> Self {
        Encryption {
            keys: Vec::new(),
            seals: false,
            enforced: false,
            iterations: MIN_ITERATIONS,
            write_salt: [0; SALT_LEN],
            derived: Mutex::new(HashMap::new()),
            aws: AwsEndpoint::default(),
            kms_write: Mutex::new(None),
            kms_opened: Mutex::new(HashMap::new()),
            random: SystemRandom::new(),
        }
    }

    /// The encryption `settings` describe, with passphrases read through `var` (the
    /// process environment in production) and KMS reached through `aws`.
    pub fn from_settings(
        settings: &EncryptionSettings,
        aws: &AwsEndpoint,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, EncryptionError> {
        let config = |s: String| EncryptionError::Config(s);
        if settings.iterations < MIN_ITERATIONS {
            return Err(config(format!(
                "iterations = {} is below the minimum of {MIN_ITERATIONS}: raise it",
                settings.iterations
            )));
        }
        let read = |field: &str, env: &str| -> Result<Key, EncryptionError> {
            let value = var(env).filter(|v| !v.is_empty()).ok_or_else(|| {
                config(format!(
                    "{field} = {env:?} names an environment variable that is not set: set it to the passphrase"
                ))
            })?;
            if value.chars().count() < MIN_PASSPHRASE_CHARS {
                return Err(config(format!(
                    "the passphrase in {env} (from {field}) is shorter than {MIN_PASSPHRASE_CHARS} characters: use a longer one"
                )));
            }
            Ok(Key::Passphrase {
                env: env.to_owned(),
                passphrase: Secret::new(value),
            })
        };
        let kms = |field: &str, id: &str| -> Result<Key, EncryptionError> {
            if id.trim().is_empty() || id.chars().any(char::is_control) {
                return Err(config(format!(
                    "{field} is empty or holds a control character: set it to a KMS key id, key ARN or alias/NAME"
                )));
            }
            Ok(Key::Kms {
                key_id: id.to_owned(),
            })
        };
        let mut keys = Vec::new();
        let seals = match settings.key_provider {
            Some(KeyProviderKind::Passphrase) => {
                keys.push(read("passphrase_env", &settings.passphrase_env)?);
                true
            }
            Some(KeyProviderKind::AwsKms) => {
                let id = settings.kms_key_id.as_deref().ok_or_else(|| {
                    config(
                        "key_provider = \"aws_kms\" needs kms_key_id: set it to the KMS key's id, ARN or alias/NAME".into(),
                    )
                })?;
                keys.push(kms("kms_key_id", id)?);
                true
            }
            None => false,
        };
        if settings.kms_key_id.is_some() && settings.key_provider != Some(KeyProviderKind::AwsKms) {
            return Err(config(
                "kms_key_id is set but key_provider is not \"aws_kms\": set key_provider = \"aws_kms\", or, for the previous key of a rotation, name it as fallback_kms_key_id".into(),
            ));
        }
        if let Some(env) = &settings.fallback_passphrase_env {
            keys.push(read("fallback_passphrase_env", env)?);
        }
        if let Some(id) = &settings.fallback_kms_key_id {
            keys.push(kms("fallback_kms_key_id", id)?);
        }
        if settings.enforced && !seals {
            return Err(config(
                "enforced = true needs a key_provider (key_provider = \"passphrase\" or \"aws_kms\")".into(),
            ));
        }
        let random = SystemRandom::new();
        let mut write_salt = [0; SALT_LEN];
        random
            .fill(&mut write_salt)
            .map_err(|_| EncryptionError::Crypto {
                what: "the key derivation salt".into(),
            })?;
        Ok(Encryption {
            keys,
            seals,
            enforced: settings.enforced,
            iterations: settings.iterations,
            write_salt,
            derived: Mutex::new(HashMap::new()),
            aws: aws.clone(),
            kms_write: Mutex::new(None),
            kms_opened: Mutex::new(HashMap::new()),
            random,
        })
    }

    /// The encryption `[encryption]` of `platform` describes, passphrases from
    /// `environment`, KMS reached as `[aws]` says.
    pub fn from_platform(
        platform: &crate::spec::PlatformSpec,
        environment: &crate::Environment,
    ) -> Result<Self, EncryptionError> {
        Self::from_settings(&platform.encryption, &(&platform.aws).into(), |name| {
            environment.get(name)
        })
    }

    /// Whether new writes are sealed.
    pub fn seals(&self) -> bool {
        self.seals
    }

    /// `record` as it is to be stored: sealed for `binding` when a key provider is
    /// configured, else unchanged. `what` names the record in errors.
    pub fn seal<'a>(
        &self,
        what: &str,
        binding: Binding,
        record: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, EncryptionError> {
        if !self.seals {
            return Ok(Cow::Borrowed(record));
        }
        let crypto = || EncryptionError::Crypto {
            what: what.to_owned(),
        };
        let mut data_key = [0u8; KEY_LEN];
        let mut data_nonce = [0u8; NONCE_LEN];
        let mut wrap_nonce = [0u8; NONCE_LEN];
        for buf in [&mut data_key[..], &mut data_nonce, &mut wrap_nonce] {
            self.random.fill(buf).map_err(|_| crypto())?;
        }
        let primary = &self.keys[0];
        let (kdf, kms, kek) = match primary {
            Key::Passphrase { passphrase, .. } => (
                Some(Kdf {
                    algorithm: KDF_ALGORITHM.into(),
                    salt: BASE64.encode(self.write_salt),
                    iterations: self.iterations,
                }),
                None,
                self.kek(0, passphrase, &self.write_salt, self.iterations),
            ),
            Key::Kms { key_id } => {
                let (kek, encrypted) = self.kms_write_kek(what, key_id)?;
                let wrap = KmsWrap {
                    key_id: key_id.clone(),
                    encrypted_kek: BASE64.encode(encrypted),
                };
                (None, Some(wrap), kek)
            }
        };
        let mut envelope = Envelope {
            kind: ENVELOPE_KIND.into(),
            version: ENVELOPE_VERSION,
            binding,
            key_provider: primary.provider().into(),
            kdf,
            kms,
            wrapped_key: String::new(),
            nonce: BASE64.encode(data_nonce),
            ciphertext: String::new(),
        };
        let aad = envelope.aad().expect("one of kdf and kms is set");
        let sealed = |key: &[u8], nonce: [u8; NONCE_LEN], plain: &[u8]| {
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| crypto())?);
            let mut buf = plain.to_vec();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf,
            )
            .map_err(|_| crypto())?;
            Ok::<_, EncryptionError>(buf)
        };
        let mut wrapped = wrap_nonce.to_vec();
        wrapped.extend(sealed(&kek, wrap_nonce, &data_key)?);
        envelope.wrapped_key = BASE64.encode(wrapped);
        envelope.ciphertext = BASE64.encode(sealed(&data_key, data_nonce, record)?);
        let mut out = serde_json::to_vec_pretty(&envelope).expect("envelope serializes");
        out.push(b'\n');
        Ok(Cow::Owned(out))
    }

    /// The plain record in `stored`, and the binding it was sealed with (`None` for a
    /// plain-text record). `what` names the record in errors.
    pub fn open<'a>(
        &self,
        what: &str,
        expected: &Expected<'_>,
        stored: &'a [u8],
    ) -> Result<(Cow<'a, [u8]>, Option<Binding>), EncryptionError> {
        let Some(envelope) = envelope_of(what, stored)? else {
            if self.enforced {
                return Err(EncryptionError::PlainRefused {
                    what: what.to_owned(),
                });
            }
            return Ok((Cow::Borrowed(stored), None));
        };
        check_binding(what, expected, &envelope.binding)?;
        let provider: &'static str = match envelope.key_provider.as_str() {
            PASSPHRASE => PASSPHRASE,
            AWS_KMS => AWS_KMS,
            _ => {
                return Err(EncryptionError::UnknownProvider {
                    what: what.to_owned(),
                    found: envelope.key_provider,
                });
            }
        };
        let malformed = |detail: &str| EncryptionError::Malformed {
            what: what.to_owned(),
            detail: detail.to_owned(),
        };
        let aad = envelope
            .aad()
            .ok_or_else(|| malformed("it has neither kdf nor kms, or both"))?;
        let decode = |field: &str, text: &str| {
            BASE64
                .decode(text)
                .map_err(|_| malformed(&format!("{field} is not base64")))
        };
        // Where the KEK comes from: a passphrase's derivation, or KMS.
        let (salt, iterations, encrypted_kek) = match (provider, &envelope.kdf, &envelope.kms) {
            (PASSPHRASE, Some(kdf), None) => {
                if kdf.algorithm != KDF_ALGORITHM {
                    return Err(malformed("unknown key derivation"));
                }
                if kdf.iterations < MIN_ITERATIONS {
                    return Err(malformed("kdf.iterations out of range"));
                }
                // An envelope from elsewhere must not make the reader derive for ever.
                if kdf.iterations > 100 * MIN_ITERATIONS.max(self.iterations) {
                    return Err(malformed(
                        "kdf.iterations beyond any this tenantform writes",
                    ));
                }
                (decode("kdf.salt", &kdf.salt)?, kdf.iterations, Vec::new())
            }
            (AWS_KMS, None, Some(kms)) => (
                Vec::new(),
                0,
                decode("kms.encrypted_kek", &kms.encrypted_kek)?,
            ),
            _ => {
                return Err(malformed(
                    "its key parameters do not match its key_provider",
                ));
            }
        };
        let candidates: Vec<usize> = (0..self.keys.len())
            .filter(|&i| self.keys[i].provider() == provider)
            .collect();
        if candidates.is_empty() {
            return Err(EncryptionError::NoKey {
                what: what.to_owned(),
                provider: provider.to_owned(),
            });
        }
        let wrapped = decode("wrapped_key", &envelope.wrapped_key)?;
        let nonce = decode("nonce", &envelope.nonce)?;
        let ciphertext = decode("ciphertext", &envelope.ciphertext)?;
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| malformed("nonce has the wrong length"))?;
        if wrapped.len() < NONCE_LEN {
            return Err(malformed("wrapped_key is too short"));
        }
        let (wrap_nonce, wrapped_key) = wrapped.split_at(NONCE_LEN);
        let wrap_nonce: [u8; NONCE_LEN] = wrap_nonce.try_into().expect("split at NONCE_LEN");
        for index in candidates {
            let kek = match &self.keys[index] {
                Key::Passphrase { passphrase, .. } => {
                    self.kek(index, passphrase, &salt, iterations)
                }
                Key::Kms { key_id } => match self.kms_read_kek(what, key_id, &encrypted_kek)? {
                    Some(kek) => kek,
                    None => continue,
                },
            };
            let Some(data_key) = unseal(&kek, wrap_nonce, &aad, wrapped_key) else {
                continue;
            };
            // The data key opened, so the header is authentic: a failure now is an
            // altered ciphertext.
            let plain = unseal(&data_key, nonce, &aad, &ciphertext).ok_or_else(|| {
                EncryptionError::WrongKey {
                    what: what.to_owned(),
                    provider: provider.to_owned(),
                    keys: self.key_names(provider),
                }
            })?;
            return Ok((Cow::Owned(plain), Some(envelope.binding)));
        }
        Err(EncryptionError::WrongKey {
            what: what.to_owned(),
            provider: provider.to_owned(),
            keys: self.key_names(provider),
        })
    }

    /// The configured keys of `provider`, as messages name them.
    fn key_names(&self, provider: &str) -> String {
        self.keys
            .iter()
            .filter(|k| k.provider() == provider)
            .map(Key::describe)
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// The KEK of this process's writes under the KMS key `key_id`, and its encrypted
    /// form: asked of KMS (`GenerateDataKey`) at the first write, then kept.
    fn kms_write_kek(
        &self,
        what: &str,
        key_id: &str,
    ) -> Result<([u8; KEY_LEN], Vec<u8>), EncryptionError> {
        let mut kept = self.kms_write.lock().expect("not poisoned");
        if let Some(k) = kept.as_ref() {
            return Ok((k.kek, k.encrypted.clone()));
        }
        let failed = |detail: String| EncryptionError::Provider {
            action: "encrypt",
            what: what.to_owned(),
            provider: AWS_KMS,
            key: format!("KMS key {key_id}"),
            detail,
        };
        let (plain, encrypted) = on_own_runtime(|| async {
            let client = AwsClients::load(self.aws.clone())
                .await
                .kms(region_of(key_id));
            let out = call(&RetryPolicy::DEFAULT, "KMS", || {
                client
                    .generate_data_key()
                    .key_id(key_id)
                    .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                    .encryption_context(KMS_CONTEXT.0, KMS_CONTEXT.1)
                    .send()
            })
            .await?;
            let plain = out.plaintext().map(|b| b.as_ref().to_vec());
            let encrypted = out.ciphertext_blob().map(|b| b.as_ref().to_vec());
            Ok((plain, encrypted))
        })
        .map_err(|e| failed(e.to_string()))?;
        let (Some(plain), Some(encrypted)) = (plain, encrypted) else {
            return Err(failed(
                "GenerateDataKey returned no plaintext or no ciphertext".into(),
            ));
        };
        let kek: [u8; KEY_LEN] = plain
            .try_into()
            .map_err(|_| failed("GenerateDataKey returned a key that is not 256 bits".into()))?;
        *kept = Some(KmsKek {
            kek,
            encrypted: encrypted.clone(),
        });
        Ok((kek, encrypted))
    }

    /// The KEK `encrypted` holds, decrypted by KMS with the key `key_id` (once per
    /// ciphertext); `None` when that key does not open it.
    fn kms_read_kek(
        &self,
        what: &str,
        key_id: &str,
        encrypted: &[u8],
    ) -> Result<Option<[u8; KEY_LEN]>, EncryptionError> {
        if let Some(kek) = self.kms_opened.lock().expect("not poisoned").get(encrypted) {
            return Ok(Some(*kek));
        }
        let answer = on_own_runtime(|| async {
            let client = AwsClients::load(self.aws.clone())
                .await
                .kms(region_of(key_id));
            let out = call(&RetryPolicy::DEFAULT, "KMS", || {
                client
                    .decrypt()
                    .key_id(key_id)
                    .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(encrypted))
                    .encryption_context(KMS_CONTEXT.0, KMS_CONTEXT.1)
                    .send()
            })
            .await?;
            Ok(out.plaintext().map(|b| b.as_ref().to_vec()))
        });
        let plain = match answer {
            Ok(plain) => plain,
            Err(e) if KMS_KEY_REFUSALS.contains(&e.code()) => {
                tracing::debug!(key = key_id, error = %e, "KMS did not decrypt the key");
                return Ok(None);
            }
            Err(e) => {
                return Err(EncryptionError::Provider {
                    action: "decrypt",
                    what: what.to_owned(),
                    provider: AWS_KMS,
                    key: format!("KMS key {key_id}"),
                    detail: e.to_string(),
                });
            }
        };
        let Some(kek) = plain.and_then(|p| <[u8; KEY_LEN]>::try_from(p).ok()) else {
            return Ok(None);
        };
        self.kms_opened
            .lock()
            .expect("not poisoned")
            .insert(encrypted.to_vec(), kek);
        Ok(Some(kek))
    }

    /// The KEK of key `index`, `passphrase`, for `salt`, derived once per process.
    fn kek(
        &self,
        index: usize,
        passphrase: &Secret,
        salt: &[u8],
        iterations: u32,
    ) -> [u8; KEY_LEN] {
        let id = (index, salt.to_vec(), iterations);
        if let Some(kek) = self.derived.lock().expect("not poisoned").get(&id) {
            return *kek;
        }
        let mut kek = [0u8; KEY_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            NonZeroU32::new(iterations).expect("iterations checked to be at least the minimum"),
            salt,
            passphrase.expose().as_bytes(),
            &mut kek,
        );
        self.derived.lock().expect("not poisoned").insert(id, kek);
        kek
    }
}

/// The region of a KMS key ARN (`arn:aws:kms:REGION:…`); `None` for ids and alias
/// names, which are in the configured region.
fn region_of(key_id: &str) -> Option<&str> {
    let mut parts = key_id.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

/// Runs the future `make` returns to its end on a thread and runtime of its own, so
/// that synchronous code can wait for it even when it runs inside a runtime.
fn on_own_runtime<F, T>(make: impl FnOnce() -> F + Send) -> Result<T, ServiceError>
where
    F: std::future::Future<Output = Result<T, ServiceError>>,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ServiceError::Config(format!("cannot start a runtime: {e}")))?;
                runtime.block_on(make())
            })
            .join()
            .unwrap_or_else(|_| Err(ServiceError::Config("the KMS call panicked".into())))
    })
}

/// The envelope in `stored`, or `None` when it is no envelope (plain text).
fn envelope_of(what: &str, stored: &[u8]) -> Result<Option<Envelope>, EncryptionError> {
    #[derive(Deserialize)]
    struct Kind {
        kind: Option<serde_json::Value>,
    }
    let is_envelope = serde_json::from_slice::<Kind>(stored)
        .ok()
        .and_then(|k| k.kind)
        .is_some_and(|k| k == ENVELOPE_KIND);
    if !is_envelope {
        return Ok(None);
    }
    let envelope: Envelope =
        serde_json::from_slice(stored).map_err(|e| EncryptionError::Malformed {
            what: what.to_owned(),
            detail: crate::spec::printable(&e.to_string()).into_owned(),
        })?;
    if envelope.version != ENVELOPE_VERSION {
        return Err(EncryptionError::Malformed {
            what: what.to_owned(),
            detail: format!(
                "envelope version {} is not {ENVELOPE_VERSION}; a newer tenantform may read it",
                envelope.version
            ),
        });
    }
    Ok(Some(envelope))
}

/// Refuses an envelope whose binding is not what the reader expects.
fn check_binding(
    what: &str,
    expected: &Expected<'_>,
    found: &Binding,
) -> Result<(), EncryptionError> {
    let describe = |content: &str, tenant: Option<&str>, lineage: Option<Uuid>, serial| {
        let mut s = content.to_owned();
        if let Some(t) = tenant {
            s += &format!(" of tenant {t}");
        }
        if let Some(s2) = serial {
            s += &format!(" serial {s2}");
        }
        if let Some(l) = lineage {
            s += &format!(" (lineage {l})");
        }
        s
    };
    let same = found.content == expected.content
        && expected
            .tenant
            .is_none_or(|t| found.tenant.as_deref() == Some(t))
        && expected.lineage.is_none_or(|l| found.lineage == Some(l))
        && expected.serial.is_none_or(|s| found.serial == Some(s));
    if same {
        return Ok(());
    }
    Err(EncryptionError::Misplaced {
        what: what.to_owned(),
        expected: describe(
            expected.content,
            expected.tenant,
            expected.lineage,
            expected.serial,
        ),
        found: describe(
            &crate::spec::printable(&found.content),
            found
                .tenant
                .as_deref()
                .map(|t| crate::spec::printable(t))
                .as_deref(),
            found.lineage,
            found.serial,
        ),
    })
}

/// `sealed` opened with `key`, or `None` when it does not authenticate.
fn unseal(key: &[u8], nonce: [u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut buf = sealed.to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "correct horse battery staple";
    const OTHER: &str = "another long passphrase!";

    fn with(primary: Option<&str>, fallback: Option<&str>, enforced: bool) -> Encryption {
        let settings = EncryptionSettings {
            key_provider: primary.map(|_| KeyProviderKind::Passphrase),
            passphrase_env: "P".into(),
            fallback_passphrase_env: fallback.map(|_| "F".into()),
            iterations: MIN_ITERATIONS,
            enforced,
            ..EncryptionSettings::default()
        };
        Encryption::from_settings(&settings, &AwsEndpoint::default(), |name| match name {
            "P" => primary.map(str::to_owned),
            "F" => fallback.map(str::to_owned),
            _ => None,
        })
        .unwrap()
    }

    fn expect_state<'a>(tenant: &'a str, serial: Option<u64>) -> Expected<'a> {
        Expected {
            content: "state",
            tenant: Some(tenant),
            lineage: None,
            serial,
        }
    }

    #[test]
    fn a_sealed_record_opens_only_with_its_key_and_binding() {
        let lineage = Uuid::new_v4();
        let enc = with(Some(PASS), None, false);
        let sealed = enc
            .seal("r", Binding::state("acme", lineage, 3), b"{\"x\":1}")
            .unwrap()
            .into_owned();
        assert!(!String::from_utf8_lossy(&sealed).contains("\"x\""));
        let (plain, binding) = enc
            .open("r", &expect_state("acme", Some(3)), &sealed)
            .unwrap();
        assert_eq!(&plain[..], b"{\"x\":1}");
        assert_eq!(binding.unwrap().serial, Some(3));

        let err = enc
            .open("r", &expect_state("other", None), &sealed)
            .unwrap_err();
        assert!(matches!(err, EncryptionError::Misplaced { .. }), "{err}");
        let err = enc
            .open("r", &expect_state("acme", Some(4)), &sealed)
            .unwrap_err();
        assert!(err.to_string().contains("serial 3"), "{err}");

        let wrong = with(Some(OTHER), None, false);
        let err = wrong
            .open("r", &expect_state("acme", None), &sealed)
            .unwrap_err();
        assert!(matches!(err, EncryptionError::WrongKey { .. }), "{err}");
        assert!(!err.to_string().contains(OTHER));

        // A claim edited to match what a reader expects no longer authenticates.
        let edited = String::from_utf8(sealed.clone())
            .unwrap()
            .replace("\"serial\": 3", "\"serial\": 4");
        let err = enc
            .open("r", &expect_state("acme", Some(4)), edited.as_bytes())
            .unwrap_err();
        assert!(matches!(err, EncryptionError::WrongKey { .. }), "{err}");
    }

    #[test]
    fn the_fallback_opens_what_the_previous_key_sealed_and_enforced_refuses_plain_text() {
        let old = with(Some(OTHER), None, false);
        let sealed = old
            .seal("r", Binding::plan(), b"plan")
            .unwrap()
            .into_owned();
        let rotated = with(Some(PASS), Some(OTHER), false);
        let expected = Expected {
            content: "plan",
            ..Expected::default()
        };
        assert_eq!(
            &rotated.open("r", &expected, &sealed).unwrap().0[..],
            b"plan"
        );
        assert_eq!(
            &rotated.open("r", &expected, b"plain").unwrap().0[..],
            b"plain"
        );
        let enforced = with(Some(PASS), None, true);
        assert!(matches!(
            enforced.open("r", &expected, b"plain"),
            Err(EncryptionError::PlainRefused { .. })
        ));
        let none = Encryption::plain();
        assert!(matches!(
            none.open("r", &expected, &sealed),
            Err(EncryptionError::NoKey { .. })
        ));
    }

    #[test]
    fn weak_settings_are_refused_naming_the_field() {
        let mut settings = EncryptionSettings {
            key_provider: Some(KeyProviderKind::Passphrase),
            passphrase_env: "P".into(),
            ..EncryptionSettings::default()
        };
        let err =
            Encryption::from_settings(&settings, &AwsEndpoint::default(), |_| Some("short".into()))
                .unwrap_err();
        assert!(err.to_string().contains("shorter than 16"), "{err}");
        let err =
            Encryption::from_settings(&settings, &AwsEndpoint::default(), |_| None).unwrap_err();
        assert!(err.to_string().contains("passphrase_env = \"P\""), "{err}");
        settings.iterations = 1000;
        let err =
            Encryption::from_settings(&settings, &AwsEndpoint::default(), |_| Some(PASS.into()))
                .unwrap_err();
        assert!(err.to_string().contains("iterations = 1000"), "{err}");
        settings.iterations = MIN_ITERATIONS;
        settings.key_provider = None;
        settings.enforced = true;
        let err =
            Encryption::from_settings(&settings, &AwsEndpoint::default(), |_| Some(PASS.into()))
                .unwrap_err();
        assert!(err.to_string().contains("needs a key_provider"), "{err}");
        settings.enforced = false;
        settings.key_provider = Some(KeyProviderKind::AwsKms);
        let err =
            Encryption::from_settings(&settings, &AwsEndpoint::default(), |_| None).unwrap_err();
        assert!(err.to_string().contains("needs kms_key_id"), "{err}");
        settings.key_provider = Some(KeyProviderKind::Passphrase);
        settings.kms_key_id = Some("alias/state".into());
        let err =
            Encryption::from_settings(&settings, &AwsEndpoint::default(), |_| Some(PASS.into()))
                .unwrap_err();
        assert!(err.to_string().contains("fallback_kms_key_id"), "{err}");
    }

    #[test]
    fn the_region_of_a_kms_key_is_its_arn_s() {
        assert_eq!(
            region_of("arn:aws:kms:eu-west-1:123456789012:key/1234"),
            Some("eu-west-1")
        );
        assert_eq!(region_of("alias/state"), None);
        assert_eq!(region_of("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
    }
}
