//! Unit tests' AWS: the SDK's own clients over an HTTP client that answers
//! from a script instead of the network. Each answer is matched to the
//! operation the request names (`X-Amz-Target`, `Action=`), so a test of a
//! step's logic states what AWS says and checks what the step asked —
//! without an emulator and without any state behind the answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

/// One scripted answer: for the operation `op`, `status` with `body`.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) op: &'static str,
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Answer {
    /// A JSON-protocol answer (DynamoDB, KMS, SSM…).
    pub(crate) fn json(op: &'static str, body: serde_json::Value) -> Answer {
        Answer { op, status: 200, content_type: "application/x-amz-json-1.0", body: body.to_string() }
    }

    /// A JSON-protocol error answer with its `__type`.
    pub(crate) fn json_error(op: &'static str, status: u16, code: &str) -> Answer {
        let body = serde_json::json!({"__type": code, "message": format!("scripted {code}")}).to_string();
        Answer { op, status, content_type: "application/x-amz-json-1.0", body }
    }
}

/// The script and what was asked, shared with the test.
#[derive(Debug, Default)]
pub(crate) struct Script {
    answers: Mutex<VecDeque<Answer>>,
    /// Every operation asked for, in order.
    pub(crate) asked: Mutex<Vec<String>>,
}

impl Script {
    pub(crate) fn new(answers: impl IntoIterator<Item = Answer>) -> Arc<Script> {
        Arc::new(Script { answers: Mutex::new(answers.into_iter().collect()), asked: Mutex::default() })
    }

    pub(crate) fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("asked").clone()
    }

    /// Answers not given yet.
    pub(crate) fn left(&self) -> usize {
        self.answers.lock().expect("answers").len()
    }

    /// The HTTP client to build SDK clients with.
    pub(crate) fn client(self: &Arc<Script>) -> SharedHttpClient {
        SharedHttpClient::new(Replay(self.clone()))
    }
}

/// The operation a request names: the JSON protocols' `X-Amz-Target`
/// (`DynamoDB_20120810.DescribeTable` → `DescribeTable`) or the query
/// protocols' `Action=`.
fn operation(req: &HttpRequest) -> String {
    if let Some(target) = req.headers().get("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    let body = req.body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
    body.split('&').find_map(|kv| kv.strip_prefix("Action=")).unwrap_or("?").to_owned()
}

#[derive(Debug, Clone)]
struct Replay(Arc<Script>);

impl HttpConnector for Replay {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let op = operation(&request);
        self.0.asked.lock().expect("asked").push(op.clone());
        let next = self.0.answers.lock().expect("answers").pop_front();
        let answer = match next {
            Some(a) if a.op == op => a,
            Some(a) => panic!("the script answers {} next, but {op} was asked", a.op),
            None => panic!("{op} was asked after the script's last answer"),
        };
        let mut response =
            Response::new(StatusCode::try_from(answer.status).expect("status"), SdkBody::from(answer.body));
        response.headers_mut().insert("content-type", answer.content_type);
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for Replay {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// Clients of every side over `script` (no retries: a scripted error is
/// seen once), for `region`.
pub(crate) fn aws(script: &Arc<Script>, region: &str) -> super::Aws {
    use aws_config::{BehaviorVersion, Region};
    let sdk = aws_types::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("AKIDREPLAY", "replay", None, None, "replay"),
        ))
        .http_client(script.client())
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .build();
    let stats = Arc::new(super::CallStats::default());
    super::Aws {
        source: super::Clients::new(super::Side::Source, sdk.clone(), &stats),
        target: super::Clients::new(super::Side::Target, sdk.clone(), &stats),
        replica: super::Clients::new(super::Side::Replica, sdk, &stats),
        stats,
    }
}
