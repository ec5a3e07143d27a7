//! The one S3 request [`super::ObjectStorage`] sends without opendal: a CopyObject of an
//! object onto itself that replaces its user metadata (`x-amz-metadata-directive: REPLACE`),
//! which stamps a completed multipart upload with its digest. opendal 0.59's copy cannot set
//! the directive, so the request is signed here (AWS SigV4, with the reqsign crates opendal
//! signs with, for the same endpoint, region, addressing style and credentials) and sent with
//! the shard's HTTP client, the one its opendal operators use.
//!
//! The copy is conditional on the ETag the completion returned
//! (`x-amz-copy-source-if-match`), so an object that someone else wrote meanwhile is never
//! stamped with this upload's digest: S3 answers 412 and nothing changes. S3 copies at most
//! 5 GiB in one CopyObject ([`MAX_COPY`]).

use std::time::Duration;

use opendal::raw::percent_encode_path;
use opendal::HttpTransporter;
use reqsign_aws_v4::{Credential, DefaultCredentialProvider, RequestSigner, StaticCredentialProvider};
use reqsign_core::{Context, OsEnv, ProvideCredentialChain, Signer};

use super::S3Config;

/// The largest object one CopyObject copies (S3's limit).
pub(super) const MAX_COPY: u64 = 5 << 30;

/// How long a copy may take at least; larger objects get more ([`timeout`]).
const BASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Signs and sends CopyObject requests for one shard.
#[derive(Clone)]
pub(super) struct MetadataCopy {
    client: reqwest::Client,
    signer: Signer<Credential>,
    /// The URL keys are appended to: `endpoint/bucket` (path style) or `scheme://bucket.host`.
    base: String,
    bucket: String,
    /// The key prefix, with a trailing `/` unless empty.
    prefix: String,
}

impl MetadataCopy {
    /// For the store `config` names, sending with `client`; `transport` (over the same client)
    /// fetches credentials that need a request (instance metadata, STS).
    pub(super) fn new(config: &S3Config, client: reqwest::Client, transport: HttpTransporter) -> Self {
        let region = config.region.as_deref().unwrap_or("us-east-1");
        // As opendal's S3 builder resolves them: its credential chain, with the static
        // credentials first, and its endpoint (the configured one, else the AWS_* variables
        // it reads, else AWS's regional endpoint; without a bucket name in it).
        let mut provider = ProvideCredentialChain::new().push(DefaultCredentialProvider::new());
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            provider = provider.push_front(StaticCredentialProvider::new(id, secret));
        }
        let ctx = Context::new()
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_http_send(transport)
            .with_env(OsEnv);
        let signer = Signer::new(ctx, provider, RequestSigner::new("s3", region));
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| {
                ["AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS_S3_ENDPOINT"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok())
            })
            .map(|e| if e.starts_with("http") { e } else { format!("https://{e}") })
            .map(|e| e.trim_end_matches('/').replace(&format!("//{}.", config.bucket), "//"))
            .filter(|e| e != "https://s3.amazonaws.com")
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let base = match endpoint.split_once("//") {
            Some((scheme, host)) if !config.path_style => format!("{scheme}//{}.{host}", config.bucket),
            _ => format!("{endpoint}/{}", config.bucket),
        };
        let prefix = if config.prefix.is_empty() { String::new() } else { format!("{}/", config.prefix) };
        MetadataCopy { client, signer, base, bucket: config.bucket.clone(), prefix }
    }

    /// Replaces the user metadata of the object `key` (below the prefix), `size` bytes long,
    /// with `metadata`, if its ETag is still `etag`. The error says why not, for the log.
    pub(super) async fn replace_metadata(
        &self,
        key: &str,
        size: u64,
        etag: &str,
        metadata: &[(String, String)],
    ) -> Result<(), String> {
        if size > MAX_COPY {
            return Err(format!("{size} bytes is more than one CopyObject copies"));
        }
        let path = percent_encode_path(&format!("{}{key}", self.prefix));
        let mut req = http::Request::put(format!("{}/{path}", self.base))
            .header("x-amz-copy-source", format!("/{}/{path}", self.bucket))
            .header("x-amz-copy-source-if-match", etag)
            .header("x-amz-metadata-directive", "REPLACE")
            .header(http::header::CONTENT_LENGTH, "0");
        for (name, value) in metadata {
            req = req.header(format!("x-amz-meta-{name}"), value);
        }
        let (mut parts, ()) = req.body(()).map_err(|e| format!("bad request: {e}"))?.into_parts();
        self.signer.sign(&mut parts, None).await.map_err(|e| format!("cannot sign: {e}"))?;
        // reqwest writes the Host header from the URL, as opendal has it.
        parts.headers.remove(http::header::HOST);
        let mut req = reqwest::Request::try_from(http::Request::from_parts(parts, Vec::<u8>::new()))
            .map_err(|e| format!("bad request: {e}"))?;
        *req.timeout_mut() = Some(timeout(size));
        let resp = self.client.execute(req).await.map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("reading the answer failed: {e}"))?;
        // S3 answers 200 as the copy starts and may still report an error in the body.
        if status.is_success() && contains(&body, b"<CopyObjectResult") {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(body.get(..body.len().min(300)).unwrap_or_default());
            Err(format!("{status}: {text}"))
        }
    }
}

/// How long the copy of `size` bytes may take: S3 copies on its side at a few hundred MB/s,
/// so 30 s and one more per 64 MiB (110 s at 5 GiB) leaves room; the session's stall timeout
/// (300 s by default) bounds the wait for the whole upload's end anyway.
fn timeout(size: u64) -> Duration {
    BASE_TIMEOUT + Duration::from_secs(size >> 26)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn base(config: S3Config) -> (String, String) {
        let client = reqwest::Client::new();
        let transport =
            HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(client.clone()));
        let copy = MetadataCopy::new(&config, client, transport);
        (copy.base, copy.prefix)
    }

    #[test]
    fn urls_follow_the_addressing_style() {
        let local = S3Config::new("b").endpoint("http://127.0.0.1:9000/").path_style(true).prefix("/p/q/");
        assert_eq!(base(local), ("http://127.0.0.1:9000/b".into(), "p/q/".into()));
        let hosted = S3Config::new("b").endpoint("https://s3.eu-west-1.amazonaws.com");
        assert_eq!(base(hosted), ("https://b.s3.eu-west-1.amazonaws.com".into(), String::new()));
        let bare = S3Config::new("b").endpoint("minio.example:9000").path_style(true);
        assert_eq!(base(bare).0, "https://minio.example:9000/b");
        let global = S3Config::new("b").endpoint("https://b.s3.amazonaws.com").region("eu-west-3");
        assert_eq!(base(global).0, "https://b.s3.eu-west-3.amazonaws.com");
    }

    #[test]
    fn timeouts_grow_with_size() {
        assert_eq!(timeout(0), BASE_TIMEOUT);
        assert_eq!(timeout(MAX_COPY), Duration::from_secs(30 + 80));
    }
}
