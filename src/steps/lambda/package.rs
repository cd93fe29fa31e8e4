//! Each function's package: dev's own, from `[source] lambda_artifacts` or
//! GetFunction's presigned link (asked for right before the download), and
//! refused unless its SHA-256 equals dev's `CodeSha256`.

use super::*;

/// Base64 SHA-256, as Lambda's CodeSha256.
pub fn code_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

/// Downloads a presigned URL (GetFunction's Code.Location).
/// Why a package download failed: the HTTP status when the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadError {
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for DownloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for DownloadError {
    fn from(message: String) -> Self {
        DownloadError { status: None, message }
    }
}

pub async fn download(url: &str) -> Result<Vec<u8>, DownloadError> {
    use http_body_util::BodyExt;
    type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
    type HttpClient = hyper_util::client::legacy::Client<Https, http_body_util::Empty<bytes::Bytes>>;
    // Built once per process, not once per package.
    static CLIENT: std::sync::OnceLock<Result<HttpClient, String>> = std::sync::OnceLock::new();
    let client = CLIENT
        .get_or_init(|| {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|e| format!("no TLS roots: {e}"))?
                .https_or_http()
                .enable_http1()
                .build();
            Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
        })
        .as_ref()
        .map_err(|e| DownloadError::from(e.clone()))?;
    let uri: hyper::Uri = url.parse().map_err(|e| DownloadError::from(format!("bad code location: {e}")))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(300), client.get(uri))
        .await
        .map_err(|_| DownloadError::from("download timed out".to_owned()))?
        .map_err(|e| DownloadError::from(format!("download failed: {e}")))?;
    if !resp.status().is_success() {
        return Err(DownloadError {
            status: Some(resp.status().as_u16()),
            message: format!("download answered HTTP {}", resp.status()),
        });
    }
    let body = resp.into_body().collect().await.map_err(|e| DownloadError::from(format!("download failed: {e}")))?;
    Ok(body.to_bytes().to_vec())
}

/// GetFunction's presigned `Code.Location` of a dev function, asked for now:
/// it is valid for about ten minutes, and the database step before this one
/// takes longer than that on AWS.
pub(super) async fn code_location(ctx: &Ctx, dev: &str) -> Result<String, StepError> {
    ctx.aws
        .source
        .lambda
        .get_function()
        .function_name(dev)
        .send()
        .await
        .on(dev, "GetFunction")?
        .code
        .and_then(|c| c.location)
        .ok_or_else(|| StepError::Invalid(format!("dev function {dev}: GetFunction gave no code location to download")))
}

/// Downloads dev's package from a fresh code location; a link that expired
/// on the way (403) is asked for once more.
pub(super) async fn download_from_dev(ctx: &Ctx, dev: &str) -> Result<Vec<u8>, StepError> {
    let failed = |e: DownloadError| StepError::Invalid(format!("dev function {dev}: {e}"));
    match download(&code_location(ctx, dev).await?).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.status == Some(403) => {
            tracing::info!(function = dev, "the package link expired; asking for a new one");
            download(&code_location(ctx, dev).await?).await.map_err(failed)
        }
        Err(e) => Err(failed(e)),
    }
}

/// Dev's package, verified against dev's CodeSha256.
pub(super) async fn fetch_package(ctx: &Ctx, f: &DevFunction) -> Result<Vec<u8>, StepError> {
    let artifacts = &ctx.cfg.source.lambda_artifacts;
    let (bytes, from) = if artifacts.is_empty() {
        (download_from_dev(ctx, &f.name).await?, "its code location".to_owned())
    } else {
        let rest = artifacts.trim_start_matches("s3://");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let key = format!("{prefix}{}.zip", f.name);
        let out = ctx
            .aws
            .source
            .s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .on(format!("s3://{bucket}/{key}"), "GetObject")?;
        let data = out.body.collect().await.map_err(|e| StepError::Invalid(format!("s3://{bucket}/{key}: {e}")))?;
        (data.into_bytes().to_vec(), format!("s3://{bucket}/{key}"))
    };
    let sha = code_sha256(&bytes);
    let want = f.config.code_sha256().unwrap_or_default();
    if sha != want {
        return Err(StepError::Invalid(format!(
            "dev function {}: the package from {from} has SHA-256 {sha}, but dev runs {want}; refusing to deploy a package that is not dev's",
            f.name
        )));
    }
    Ok(bytes)
}
