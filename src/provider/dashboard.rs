//! Grafana dashboards, one per tenant, by two documented Grafana paths:
//!
//! - **File provisioning**: the dashboard JSON is written to the platform's dashboards
//!   directory, which a Grafana dashboard provider
//!   (`provisioning/dashboards/*.yaml`, `options.path`) watches. Always done.
//! - **HTTP API**: when the resource has a `grafana_url`, the dashboard is also
//!   uploaded with `POST /api/dashboards/db` (`overwrite: true`), read with
//!   `GET /api/dashboards/uid/<uid>` and removed with `DELETE /api/dashboards/uid/<uid>`,
//!   authenticated with a service-account token from the environment.
//!
//! The JSON is rendered from the resource's attributes, so the same attributes always
//! give the same bytes. Reading parses the file back into attributes; a panel that was
//! edited by hand reads with a "(changed outside tenantform)" title, so the plan shows
//! drift and the next apply writes the file again.

use crate::environment::Environment;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{CreateMode, Provider, ProviderError};
use crate::connect::retry::RetryPolicy;
use crate::resource::{Attributes, Resource, ResourceAddress, attr_str, required_str, string_list};

const SERVICE: &str = "Grafana";

/// Appended to the title of a panel whose JSON differs from what tenantform wrote.
pub const CHANGED_MARK: &str = " (changed outside tenantform)";

/// The PromQL of each panel, for one tenant. Metric names are the RAG platform's.
fn panel_query(title: &str, tenant: &str) -> Option<(String, &'static str)> {
    let sel = format!("{{tenant=\"{tenant}\"}}");
    Some(match title {
        "Query latency p95" => (
            format!(
                "histogram_quantile(0.95, sum by (le) (rate(rag_query_duration_seconds_bucket{sel}[5m]))) * 1000"
            ),
            "ms",
        ),
        "Query rate" => (format!("sum(rate(rag_queries_total{sel}[5m]))"), "reqps"),
        "Error rate" => (
            format!(
                "sum(rate(rag_query_errors_total{sel}[5m])) / clamp_min(sum(rate(rag_queries_total{sel}[5m])), 1e-9)"
            ),
            "percentunit",
        ),
        "Document count" => (format!("max(rag_documents{sel})"), "short"),
        _ => return None,
    })
}

/// The dashboard model (as Grafana stores it and as file provisioning reads it).
pub fn render(attrs: &Attributes) -> Result<Value, ProviderError> {
    let tenant = required_str(attrs, "tenant")?;
    let datasource = json!({"type": "prometheus", "uid": required_str(attrs, "datasource_uid")?});
    let sla = attrs.get("sla_latency_ms").cloned().unwrap_or(Value::Null);
    let mut panels = Vec::new();
    for (i, title) in string_list(attrs, "panels").iter().enumerate() {
        let Some((expr, unit)) = panel_query(title, tenant) else {
            return Err(ProviderError::Config(format!(
                "unknown dashboard panel {title:?}; this is a blueprint bug"
            )));
        };
        let i = i as u64;
        let mut panel = json!({
            "id": i + 1,
            "type": if title == "Document count" { "stat" } else { "timeseries" },
            "title": title,
            "datasource": datasource,
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8},
            "targets": [{"refId": "A", "datasource": datasource, "expr": expr}],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        });
        if title == "Query latency p95" {
            // The tier's SLA as a red threshold line.
            panel["fieldConfig"]["defaults"]["thresholds"] = json!({
                "mode": "absolute",
                "steps": [{"color": "green", "value": null}, {"color": "red", "value": sla}],
            });
            panel["fieldConfig"]["defaults"]["custom"] =
                json!({"thresholdsStyle": {"mode": "line"}});
        }
        panels.push(panel);
    }
    Ok(json!({
        "id": null,
        "uid": required_str(attrs, "uid")?,
        "title": required_str(attrs, "title")?,
        "tags": attrs.get("tags").cloned().unwrap_or(json!([])),
        "timezone": "browser",
        "editable": false,
        "schemaVersion": 39,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "tenant", "label": "Tenant", "type": "constant", "hide": 2,
            "query": tenant,
            "current": {"text": tenant, "value": tenant},
        }]},
        "panels": panels,
    }))
}

/// The attributes a dashboard model stands for; `file` and `grafana_url` come from
/// `current`, which is where they are known.
fn parse(model: &Value, current: &Attributes) -> Attributes {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let tenant = model["templating"]["list"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == "tenant"))
        .map(|v| s(&v["query"]))
        .unwrap_or_default();
    let panels: Vec<&Value> = model["panels"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let latency = panels.iter().find(|p| p["title"] == "Query latency p95");
    let sla = latency
        .map(|p| p["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"].clone())
        .unwrap_or(Value::Null);
    let datasource = panels
        .first()
        .map(|p| s(&p["datasource"]["uid"]))
        .unwrap_or_default();
    let mut attrs = Attributes::from([
        ("uid".into(), json!(s(&model["uid"]))),
        (
            "file".into(),
            current.get("file").cloned().unwrap_or(Value::Null),
        ),
        (
            "grafana_url".into(),
            current.get("grafana_url").cloned().unwrap_or(Value::Null),
        ),
        ("title".into(), json!(s(&model["title"]))),
        ("tenant".into(), json!(tenant)),
        ("tags".into(), model["tags"].clone()),
        ("datasource_uid".into(), json!(datasource)),
        ("sla_latency_ms".into(), sla),
    ]);
    let titles: Vec<String> = panels.iter().map(|p| s(&p["title"])).collect();
    attrs.insert("panels".into(), json!(titles));
    // What tenantform would have written for these attributes, panel by panel.
    let expected = render(&attrs).ok();
    let titles: Vec<String> = panels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let same = expected
                .as_ref()
                .is_some_and(|e| e["panels"].get(i) == Some(*p));
            if same {
                s(&p["title"])
            } else {
                format!("{}{CHANGED_MARK}", s(&p["title"]))
            }
        })
        .collect();
    attrs.insert("panels".into(), json!(titles));
    attrs
}

/// Dashboards as files, and in Grafana when it has a URL.
pub struct DashboardProvider {
    http: reqwest::Client,
    token: Option<crate::secret::Secret>,
    retry: RetryPolicy,
}

impl DashboardProvider {
    /// `token_env` names the variable with Grafana's service-account token (used only
    /// with a `grafana_url`).
    pub fn new(token_env: &str, environment: &Environment) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| {
                ProviderError::Config(format!("cannot set up the HTTP client for Grafana: {e}"))
            })?;
        let token = environment.get(token_env).map(crate::secret::Secret::new);
        Ok(DashboardProvider {
            http,
            token,
            retry: RetryPolicy::DEFAULT,
        })
    }

    fn file(attrs: &Attributes) -> Result<PathBuf, ProviderError> {
        Ok(PathBuf::from(required_str(attrs, "file")?))
    }

    fn write_file(path: &Path, model: &Value) -> Result<(), ProviderError> {
        let io = |what: &str, e: std::io::Error| {
            ProviderError::Config(format!(
                "cannot {what} {}: {e}; check [dashboards] dir in platform.toml and the directory's permissions",
                path.display()
            ))
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
        let mut bytes = serde_json::to_vec_pretty(model).expect("JSON serializes");
        bytes.push(b'\n');
        // Written whole and renamed, so that Grafana never reads half a file.
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("write", e))?;
        f.write_all(&bytes).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("write", e))
    }

    fn read_file(path: &Path) -> Result<Option<Value>, ProviderError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Value::Null))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ProviderError::Config(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    fn api(attrs: &Attributes) -> Option<String> {
        attr_str(attrs, "grafana_url").map(|u| u.trim_end_matches('/').to_owned())
    }

    /// One API call with retries; `Ok(None)` for 404.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, ProviderError> {
        self.retry
            .run(SERVICE, || async {
                let mut request = self.http.request(method.clone(), url);
                if let Some(t) = &self.token {
                    request = request.bearer_auth(t.expose());
                }
                if let Some(b) = body {
                    request = request.json(b);
                }
                let response = request.send().await.map_err(|e| {
                    if e.is_timeout() {
                        ProviderError::Timeout {
                            service: SERVICE,
                            timeout: Duration::from_secs(15),
                        }
                    } else {
                        ProviderError::Unreachable {
                            service: SERVICE,
                            detail: e.without_url().to_string(),
                        }
                    }
                })?;
                let status = response.status();
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    return Ok(Some(body));
                }
                Err(ProviderError::Api {
                    service: SERVICE,
                    code: status.as_u16().to_string(),
                    message: body["message"].as_str().unwrap_or("no message").to_owned(),
                    retryable: status.is_server_error() || status.as_u16() == 429,
                })
            })
            .await
    }

    async fn upload(&self, base: &str, model: &Value) -> Result<(), ProviderError> {
        let body = json!({"dashboard": model, "overwrite": true, "message": "tenantform apply"});
        self.call(
            reqwest::Method::POST,
            &format!("{base}/api/dashboards/db"),
            Some(&body),
        )
        .await?
        .ok_or_else(|| ProviderError::Api {
            service: SERVICE,
            code: "404".into(),
            message: format!(
                "{base}/api/dashboards/db not found; is grafana_url Grafana's base URL?"
            ),
            retryable: false,
        })
        .map(|_| ())
    }

    async fn put(&self, attrs: &Attributes) -> Result<(), ProviderError> {
        let model = render(attrs)?;
        Self::write_file(&Self::file(attrs)?, &model)?;
        if let Some(base) = Self::api(attrs) {
            self.upload(&base, &model).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for DashboardProvider {
    async fn read(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let Some(model) = Self::read_file(&Self::file(current)?)? else {
            return Ok(None);
        };
        let mut attrs = parse(&model, current);
        if let Some(base) = Self::api(current) {
            let uid = required_str(current, "uid")?;
            let url = format!("{base}/api/dashboards/uid/{uid}");
            // Missing in Grafana while the file is there: it reads as not uploaded
            // (no grafana_url), which plans an update that uploads it again.
            if self.call(reqwest::Method::GET, &url, None).await?.is_none() {
                attrs.insert("grafana_url".into(), Value::Null);
            }
        }
        Ok(Some(attrs))
    }

    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let path = Self::file(a)?;
        if !mode.is_resume() && path.exists() {
            return Err(ProviderError::AlreadyExists {
                what: format!("dashboard file {}", path.display()),
            });
        }
        self.put(a).await?;
        Ok(Attributes::new())
    }

    async fn update(
        &self,
        resource: &Resource,
        _current: &Attributes,
        _changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        self.put(&resource.attributes).await?;
        Ok(Attributes::new())
    }

    async fn delete(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        let path = Self::file(current)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ProviderError::Config(format!(
                    "cannot remove {}: {e}",
                    path.display()
                )));
            }
        }
        if let Some(base) = Self::api(current) {
            let uid = required_str(current, "uid")?;
            self.call(
                reqwest::Method::DELETE,
                &format!("{base}/api/dashboards/uid/{uid}"),
                None,
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Attributes {
        Attributes::from([
            ("uid".into(), json!("tenant-acme")),
            ("file".into(), json!("/tmp/x.json")),
            ("grafana_url".into(), Value::Null),
            ("title".into(), json!("Tenant Acme (acme)")),
            ("tenant".into(), json!("acme")),
            ("tags".into(), json!(["tenantform", "tier:gold"])),
            ("datasource_uid".into(), json!("prometheus")),
            ("sla_latency_ms".into(), json!(500)),
            (
                "panels".into(),
                json!([
                    "Query latency p95",
                    "Query rate",
                    "Error rate",
                    "Document count"
                ]),
            ),
        ])
    }

    #[test]
    fn render_then_parse_gives_the_attributes_back() {
        let a = attrs();
        let model = render(&a).unwrap();
        assert_eq!(parse(&model, &a), a);
        for p in model["panels"].as_array().unwrap() {
            let expr = p["targets"][0]["expr"].as_str().unwrap();
            assert!(expr.contains("{tenant=\"acme\"}"), "{expr}");
        }
    }

    #[test]
    fn a_panel_edited_by_hand_reads_as_changed() {
        let a = attrs();
        let mut model = render(&a).unwrap();
        model["panels"][1]["targets"][0]["expr"] = json!("sum(rate(rag_queries_total[5m]))");
        let read = parse(&model, &a);
        assert_eq!(
            read["panels"][1],
            json!(format!("Query rate{CHANGED_MARK}"))
        );
        assert_eq!(read["panels"][0], json!("Query latency p95"));
    }
}
