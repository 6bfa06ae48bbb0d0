//! What the tools talking to a running reprise share: where it is and the
//! key to present.

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The running reprise, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "REPRISE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Key to present (`Authorization: Bearer KEY`): a caller key acts on
    /// its own namespace, an admin key on any.
    #[arg(long, env = "REPRISE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl Target {
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    pub fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let builder = client.request(method, self.endpoint(path));
        match &self.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }
}

/// The HTTP client of the tools.
pub fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A failed answer, as `status: message`.
pub async fn failure(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .unwrap_or(body);
    format!("{status}: {message}")
}
