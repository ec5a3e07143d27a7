//! The S3 requests [`super::ObjectStorage`] sends itself rather than through opendal: the
//! multipart upload of an upload's parts, and a copy of an object onto itself that replaces
//! its user metadata, which stamps a completed multipart upload with its digest. They are
//! signed here (AWS SigV4, with the reqsign crates opendal signs with, for the same endpoint,
//! region, addressing style and credentials) and sent with the shard's HTTP client, the one
//! its opendal operators use.
//!
//! # Uploads
//! opendal 0.59's multipart writer keeps each write back until the next one arrives (to know
//! which part is the last), so with one part being filled it holds two more: sending one part
//! while the next arrives would take three parts of memory, and with two the upload stops
//! receiving while each part is sent. Sent from here, a part streams to the store as it
//! arrives ([`S3Api::stream_part`]) while the part before it finishes: two parts in flight
//! and two in memory per upload (see `ObjectWriter` for how a short last part is handled). A
//! part is idempotent (the same number and bytes), so a part that fails with a network error,
//! a throttling answer or a 5xx is sent again from its buffer ([`PART_ATTEMPTS`]); the
//! creation and the completion are not (a retried creation whose
//! answer was lost would leave an orphaned upload; a retried completion fails with
//! NoSuchUpload).
//!
//! With [`S3Config::checksums`] (off by default; see there for what it costs) an upload
//! declares CRC32 (`x-amz-checksum-algorithm`, as AWS's SDKs do since 2025) and every part
//! carries the CRC32 of its bytes, which the store checks before it keeps the part (400
//! BadDigest otherwise, and the part is sent again): a whole part in the
//! `x-amz-checksum-crc32` header, a streamed part, whose CRC is known only once its last byte
//! is out, as the trailer of an `aws-chunked` body (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`) of
//! one chunk, whose length is known up front. The completion names each part's CRC, and the
//! object gets S3's composite CRC32.
//!
//! # Digest stamps
//! opendal 0.59's copy cannot set the metadata. Up to 5 GiB ([`MAX_COPY`], S3's limit for one
//! copy) it is one CopyObject with
//! `x-amz-metadata-directive: REPLACE`. A larger object is copied onto itself in parts: a
//! CreateMultipartUpload with the new metadata, an UploadPartCopy per [`COPY_PART`] range, and
//! a CompleteMultipartUpload; a failure on the way aborts the copy's upload, so none is left
//! behind. Either way S3 copies on its side and no byte comes back.
//!
//! Every copy is conditional on the ETag the upload's completion returned
//! (`x-amz-copy-source-if-match`, on each part), so an object that someone else wrote
//! meanwhile is never stamped with this upload's digest: S3 answers 412 and nothing changes.
//! The completion of a copy in parts also carries `If-Match` (S3's conditional write), which
//! closes the window between the last part copy and the completion on stores that honour it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use base64::prelude::{Engine, BASE64_STANDARD};
use bytes::Bytes;
use futures_core::Stream;
use opendal::raw::percent_encode_path;
use opendal::HttpTransporter;
use reqsign_aws_v4::{Credential, DefaultCredentialProvider, RequestSigner, StaticCredentialProvider};
use reqsign_core::{Context, OsEnv, ProvideCredentialChain, Signer};

use super::S3Config;

/// The largest object one CopyObject copies (S3's limit; also the largest part).
pub(super) const MAX_COPY: u64 = 5 << 30;

/// The smallest part of a multipart upload but the last (S3's limit).
pub(super) const MIN_PART: u64 = 5 << 20;

/// The range each UploadPartCopy copies. 1 GiB keeps each request short (a few seconds on S3's
/// side, so its timeout stays tight) and the largest upload (78 GiB) under 80 parts, far from
/// S3's 10,000; larger parts would save only a few requests per huge object.
const COPY_PART: u64 = 1 << 30;

/// How long a copy may take at least; larger objects get more ([`timeout`]).
const BASE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a part is sent before its upload fails.
const PART_ATTEMPTS: u32 = 3;

/// How long one part's request may take: 8 MiB at 300 KB/s. The client's read timeout (no
/// byte for 60 s) catches a store that stops answering sooner.
pub(super) const PART_TIMEOUT: Duration = Duration::from_secs(30);

/// Signs and sends one shard's own S3 requests.
pub(super) struct S3Api {
    client: reqwest::Client,
    signer: Signer<Credential>,
    /// The URL keys are appended to: `endpoint/bucket` (path style) or `scheme://bucket.host`.
    base: String,
    bucket: String,
    /// The key prefix, with a trailing `/` unless empty.
    prefix: String,
    /// The largest object copied in one CopyObject ([`MAX_COPY`] but in tests).
    max_copy: u64,
    /// Parts carry their CRC32 ([`S3Config::checksums`]).
    checksums: bool,
}

/// A part the store has: what the completion names it by.
#[derive(Clone, Debug)]
pub(super) struct SentPart {
    etag: String,
    /// The base64 CRC32 of its bytes, when parts carry one.
    crc32: Option<String>,
    /// Its bytes, when it took more than one request: a request that failed may still be
    /// running on the store's side and shadow the part ([`S3Api::complete_upload`]).
    pub(super) again: Option<Bytes>,
}

impl SentPart {
    /// This part, keeping its bytes `part` because an earlier request for it failed.
    pub(super) fn sent_again(self, part: Bytes) -> SentPart {
        SentPart { again: Some(part), ..self }
    }
}

impl S3Api {
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
        S3Api {
            client,
            signer,
            base,
            bucket: config.bucket.clone(),
            prefix,
            max_copy: config.copy_limit,
            checksums: config.checksums,
        }
    }

    /// Where the object `key` (below the prefix) is.
    fn object(&self, key: &str) -> Object {
        let path = percent_encode_path(&format!("{}{key}", self.prefix));
        Object { url: format!("{}/{path}", self.base), source: format!("/{}/{path}", self.bucket) }
    }

    /// Starts a multipart upload of the object `key`; the URL its parts go to.
    pub(super) async fn create_upload(&self, key: &str) -> Result<Upload, Failure> {
        let object = self.object(key);
        let mut req = http::Request::post(format!("{}?uploads", object.url));
        if self.checksums {
            req = req.header("x-amz-checksum-algorithm", "CRC32");
        }
        let answer = self.send(req, Bytes::new(), BASE_TIMEOUT);
        let id = element(&answer.await?.1, "UploadId").ok_or_else(|| Failure::answer("no UploadId"))?;
        Ok(Upload(Arc::from(format!("{}?uploadId={}", object.url, percent_encode_path(&id)))))
    }

    /// Sends part `number` (from 1) of `upload`, again after a failure that may pass.
    pub(super) async fn upload_part(
        &self,
        upload: &Upload,
        number: u32,
        part: Bytes,
    ) -> Result<SentPart, Failure> {
        let url = format!("{}&partNumber={number}", upload.0);
        let crc32 = self.checksums.then(|| crc32_base64(crc32fast::hash(&part)));
        let mut attempt = 1;
        loop {
            let mut req = http::Request::put(&url);
            if let Some(crc) = &crc32 {
                req = req.header("x-amz-checksum-crc32", crc);
            }
            let sent = self.send(req, part.clone(), PART_TIMEOUT).await;
            match sent.and_then(|(headers, _)| part_etag(&headers)) {
                Ok(etag) => {
                    let again = (attempt > 1).then_some(part);
                    return Ok(SentPart { etag, crc32, again });
                }
                Err(e) if attempt < PART_ATTEMPTS && e.is_temporary() => {
                    tracing::debug!(error = %e, number, attempt, "sending the part again");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends part `number` of `upload`, `len` bytes long, from `chunks` as they come, with no
    /// time limit (the bytes come as fast as the FTP client sends them; the caller bounds the
    /// wait once they are all there). Once, as its bytes are gone. With checksums the body is
    /// `aws-chunked`: one chunk of `len` bytes, then the CRC32 trailer.
    pub(super) async fn stream_part<S>(
        &self,
        upload: &Upload,
        number: u32,
        len: usize,
        chunks: S,
    ) -> Result<SentPart, Failure>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let req = http::Request::put(format!("{}&partNumber={number}", upload.0));
        if !self.checksums {
            let (headers, _) = self.execute(req, reqwest::Body::wrap_stream(chunks), len, None).await?;
            return Ok(SentPart { etag: part_etag(&headers)?, crc32: None, again: None });
        }
        let body = AwsChunked::new(len, chunks);
        let (encoded, crc32) = (body.encoded_len(), body.crc32.clone());
        let req = req
            .header("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            .header(http::header::CONTENT_ENCODING, "aws-chunked")
            .header("x-amz-decoded-content-length", len)
            .header("x-amz-trailer", "x-amz-checksum-crc32");
        let (headers, _) = self.execute(req, reqwest::Body::wrap_stream(body), encoded, None).await?;
        let crc32 = crc32.get().cloned().ok_or_else(|| Failure::local("the part's CRC is missing".into()))?;
        Ok(SentPart { etag: part_etag(&headers)?, crc32: Some(crc32), again: None })
    }

    /// Completes `upload` from its parts, in order; the object's ETag.
    ///
    /// A part sent more than once may be refused as InvalidPart: Garage (2.5) records each
    /// attempt as it starts, with a timestamp, and completes from the latest attempt of each
    /// part, finished or not, so a failed attempt the store began after the good one shadows
    /// it. The parts that kept their bytes ([`SentPart::again`]) are sent once more, after
    /// every earlier attempt has ended, and the upload completed again.
    pub(super) async fn complete_upload(
        &self,
        upload: &Upload,
        parts: &mut [SentPart],
    ) -> Result<String, Failure> {
        match self.complete(upload, parts).await {
            Err(e) if e.is_invalid_part() && parts.iter().any(|p| p.again.is_some()) => {
                tracing::debug!(error = %e, "sending the parts sent more than once again");
                for (number, part) in (1u32..).zip(parts.iter_mut()) {
                    if let Some(bytes) = part.again.take() {
                        *part = self.upload_part(upload, number, bytes).await?;
                    }
                }
                self.complete(upload, parts).await
            }
            completed => completed,
        }
    }

    /// One CompleteMultipartUpload.
    async fn complete(&self, upload: &Upload, parts: &[SentPart]) -> Result<String, Failure> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, part) in (1u32..).zip(parts) {
            body.push_str(&format!("<Part><PartNumber>{number}</PartNumber>"));
            if let Some(crc) = &part.crc32 {
                body.push_str(&format!("<ChecksumCRC32>{crc}</ChecksumCRC32>"));
            }
            body.push_str(&format!("<ETag>{}</ETag></Part>", quick_xml::escape::escape(&part.etag)));
        }
        body.push_str("</CompleteMultipartUpload>");
        // S3 assembles the parts before it answers: a few seconds for a large upload.
        let wait = BASE_TIMEOUT + Duration::from_millis(parts.len() as u64 * 100);
        let (_, answer) = self.send(http::Request::post(&*upload.0), Bytes::from(body), wait).await?;
        // The answer's root is CompleteMultipartUploadResult (moto: ...Response); an error
        // has no ETag.
        element(&answer, "ETag").ok_or_else(|| Failure::answer(&failure(&answer)))
    }

    /// Aborts `upload`, so none of its parts stays on the store.
    pub(super) async fn abort_upload(&self, upload: &Upload) {
        self.abort(&upload.0).await;
    }

    /// Replaces the user metadata of the object `key` (below the prefix), `size` bytes long,
    /// with `metadata`, if its ETag is still `etag`.
    pub(super) async fn replace_metadata(
        &self,
        key: &str,
        size: u64,
        etag: &str,
        metadata: &[(String, String)],
    ) -> Result<(), Failure> {
        let object = self.object(key);
        if size > self.max_copy {
            return self.copy_in_parts(&object, size, etag, metadata).await;
        }
        let mut req = with_metadata(http::Request::put(&object.url), metadata)
            .header("x-amz-copy-source", &object.source)
            .header("x-amz-copy-source-if-match", etag)
            .header("x-amz-metadata-directive", "REPLACE");
        if self.checksums {
            // The copy is one object, not the upload's parts: it gets a whole-object CRC32.
            // Without this moto keeps the parts' composite CRC as if it were one, which
            // clients that check it (boto3) then refuse.
            req = req.header("x-amz-checksum-algorithm", "CRC32");
        }
        let (_, body) = self.send(req, Bytes::new(), timeout(size)).await?;
        element(&body, "CopyObjectResult").map(drop).ok_or_else(|| Failure::answer(&failure(&body)))
    }

    /// The copy of an object past [`S3Api::max_copy`] onto itself, in parts; aborted
    /// on failure.
    async fn copy_in_parts(
        &self,
        object: &Object,
        size: u64,
        etag: &str,
        metadata: &[(String, String)],
    ) -> Result<(), Failure> {
        // The metadata goes with the upload's creation. Uploads set no Content-Type, so the
        // copy keeps the store's default as a single CopyObject with REPLACE does.
        let req = with_metadata(http::Request::post(format!("{}?uploads", object.url)), metadata);
        let (_, body) = self.send(req, Bytes::new(), BASE_TIMEOUT).await?;
        let upload = element(&body, "UploadId").ok_or_else(|| Failure::answer(&failure(&body)))?;
        let upload = format!("{}?uploadId={}", object.url, percent_encode_path(&upload));
        let copied = self.copy_parts(object, &upload, size, etag).await;
        if copied.is_err() {
            self.abort(&upload).await;
        }
        copied
    }

    /// Copies the object's bytes into the multipart upload `upload` (its URL) and completes it.
    async fn copy_parts(&self, object: &Object, upload: &str, size: u64, etag: &str) -> Result<(), Failure> {
        let part = self.max_copy.min(COPY_PART);
        let mut complete = String::from("<CompleteMultipartUpload>");
        let (mut start, mut number) = (0u64, 1u32);
        while start < size {
            let end = size.min(start.saturating_add(part));
            let req = http::Request::put(format!("{upload}&partNumber={number}"))
                .header("x-amz-copy-source", &object.source)
                .header("x-amz-copy-source-range", format!("bytes={start}-{}", end - 1))
                .header("x-amz-copy-source-if-match", etag);
            let (_, body) = self.send(req, Bytes::new(), timeout(end - start)).await?;
            let part_etag = element(&body, "ETag").ok_or_else(|| Failure::answer(&failure(&body)))?;
            complete.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                quick_xml::escape::escape(&part_etag)
            ));
            (start, number) = (end, number + 1);
        }
        complete.push_str("</CompleteMultipartUpload>");
        let req = http::Request::post(upload).header(http::header::IF_MATCH, etag);
        let (_, body) = self.send(req, Bytes::from(complete), timeout(size)).await?;
        element(&body, "ETag").map(drop).ok_or_else(|| Failure::answer(&failure(&body)))
    }

    /// Aborts the multipart upload `upload` (its URL); DELETE is idempotent, so a failure is
    /// retried a little before the parts are left to the bucket's lifecycle rule.
    async fn abort(&self, upload: &str) {
        for attempt in 0..3u32 {
            match self.send(http::Request::delete(upload), Bytes::new(), BASE_TIMEOUT).await {
                Ok(_) => {
                    tracing::debug!(upload, "multipart upload aborted on the store");
                    return;
                }
                Err(e) if attempt == 2 => {
                    tracing::warn!(upload, error = %e, "cannot abort a multipart upload; its parts stay until the bucket's lifecycle rule removes them");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200 << attempt)).await,
            }
        }
    }

    /// Signs and sends `req` with `body` (unsigned: S3 checks the TCP and TLS layers' integrity
    /// as for opendal's requests), waiting at most `timeout`; the answer's headers and body if
    /// its status is a success.
    async fn send(
        &self,
        req: http::request::Builder,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(http::HeaderMap, Bytes), Failure> {
        let len = body.len();
        self.execute(req, body.into(), len, Some(timeout)).await
    }

    /// [`S3Api::send`] with `len` bytes of any `body`, and no time limit without `timeout`.
    async fn execute(
        &self,
        req: http::request::Builder,
        body: reqwest::Body,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<(http::HeaderMap, Bytes), Failure> {
        let req = req.header(http::header::CONTENT_LENGTH, len);
        let (mut parts, ()) =
            req.body(()).map_err(|e| Failure::local(format!("bad request: {e}")))?.into_parts();
        self.signer.sign(&mut parts, None).await.map_err(|e| Failure::local(format!("cannot sign: {e}")))?;
        // reqwest writes the Host header from the URL, as opendal has it.
        parts.headers.remove(http::header::HOST);
        let mut req = reqwest::Request::try_from(http::Request::from_parts(parts, body))
            .map_err(|e| Failure::local(format!("bad request: {e}")))?;
        *req.timeout_mut() = timeout;
        let network = |e: reqwest::Error| Failure { status: None, message: e.to_string() };
        let resp = self.client.execute(req).await.map_err(network)?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = resp.bytes().await.map_err(network)?;
        if status.is_success() {
            Ok((headers, body))
        } else {
            Err(Failure { status: Some(status), message: failure(&body) })
        }
    }
}

/// A CRC32 as S3 writes it: the base64 of its four bytes, big-endian.
fn crc32_base64(crc: u32) -> String {
    BASE64_STANDARD.encode(crc.to_be_bytes())
}

/// An `aws-chunked` body of one chunk: `len` bytes from the inner stream, then a CRC32 of
/// them as the trailer; `crc32` holds that CRC once the trailer is out. One chunk because
/// stores buffer a chunk whole before they pass its bytes on, and the stores measured spend
/// the least on the fewest: per 256 MiB upload Garage 2.5 (which copies what follows a chunk
/// each time it parses one) spent 1.41 CPU seconds unchunked, 2.37 in 8 MiB chunks, 2.52 in
/// 1 MiB and 2.88 in AWS's SDKs' 64 KiB; moto 2.0 in 8 MiB and 2.7 in 1 MiB.
struct AwsChunked<S> {
    inner: Pin<Box<S>>,
    /// The chunk's header, until it is out (none if `len` is 0: only the last chunk).
    head: Option<Bytes>,
    len: usize,
    /// Bytes still to come.
    left: usize,
    /// None once the trailer is out.
    hasher: Option<crc32fast::Hasher>,
    crc32: Arc<OnceLock<String>>,
}

impl<S> AwsChunked<S> {
    fn new(len: usize, inner: S) -> Self {
        AwsChunked {
            inner: Box::pin(inner),
            head: (len > 0).then(|| Bytes::from(format!("{len:x}\r\n"))),
            len,
            left: len,
            hasher: Some(crc32fast::Hasher::new()),
            crc32: Arc::default(),
        }
    }

    /// The last chunk (empty) and the trailer, after the CRLF that ends the data chunk.
    fn trailer(data: bool, crc: &str) -> String {
        format!("{}0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n", if data { "\r\n" } else { "" })
    }

    /// The body's length on the wire: header, bytes and trailer.
    fn encoded_len(&self) -> usize {
        let head = if self.len > 0 { format!("{:x}\r\n", self.len).len() } else { 0 };
        head + self.len + Self::trailer(self.len > 0, &crc32_base64(0)).len()
    }
}

impl<S: Stream<Item = io::Result<Bytes>>> Stream for AwsChunked<S> {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(head)));
        }
        let Some(hasher) = &mut this.hasher else {
            return Poll::Ready(None);
        };
        match std::task::ready!(this.inner.as_mut().poll_next(cx)) {
            Some(Ok(piece)) if piece.len() > this.left => {
                let long = "the part has more bytes than its length";
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, long))))
            }
            Some(Ok(piece)) => {
                hasher.update(&piece);
                this.left -= piece.len();
                Poll::Ready(Some(Ok(piece)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None if this.left > 0 => {
                let short = format!("the part ended {} bytes short", this.left);
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::UnexpectedEof, short))))
            }
            None => {
                let crc = crc32_base64(this.hasher.take().map_or(0, crc32fast::Hasher::finalize));
                let trailer = Bytes::from(Self::trailer(this.len > 0, &crc));
                let _ = this.crc32.set(crc);
                Poll::Ready(Some(Ok(trailer)))
            }
        }
    }
}

/// The ETag of an UploadPart's answer.
fn part_etag(headers: &http::HeaderMap) -> Result<String, Failure> {
    let etag = headers.get(http::header::ETAG).and_then(|v| v.to_str().ok());
    etag.map(str::to_owned).ok_or_else(|| Failure::answer("a part's answer has no ETag"))
}

/// A multipart upload: the URL its parts go to (`object?uploadId=...`).
#[derive(Clone, Debug)]
pub(super) struct Upload(Arc<str>);

/// Why a request failed: the store's answer (its status and the start of its body), or none
/// (the network, a timeout; `status` is `None`).
#[derive(Debug)]
pub(super) struct Failure {
    status: Option<http::StatusCode>,
    message: String,
}

impl Failure {
    /// A 2xx answer without what its success carries.
    fn answer(message: &str) -> Failure {
        Failure { status: Some(http::StatusCode::OK), message: message.to_owned() }
    }

    /// A request that took too long; it may pass when sent again.
    pub(super) fn timed_out(what: &str) -> Failure {
        Failure { status: None, message: format!("{what} timed out") }
    }

    /// A request that could not be made; never sent again.
    fn local(message: String) -> Failure {
        Failure { status: Some(http::StatusCode::BAD_REQUEST), message }
    }

    /// Whether the store refused a completion for a part it does not have as named.
    fn is_invalid_part(&self) -> bool {
        // 400, or 200 with the error in the body, as S3 may answer a completion.
        self.status.is_some() && self.message.contains("<Code>InvalidPart</Code>")
    }

    /// Whether the same request may succeed later: a network failure, throttling, a 5xx.
    fn is_temporary(&self) -> bool {
        // A part whose bytes do not match its CRC32 was damaged on the way (BadDigest is
        // S3's code; InvalidDigest Garage's); its buffer still has the right ones.
        let damaged = || {
            self.status == Some(http::StatusCode::BAD_REQUEST)
                && ["<Code>BadDigest</Code>", "<Code>InvalidDigest</Code>"]
                    .iter()
                    .any(|c| self.message.contains(c))
        };
        self.status.is_none_or(|s| s.is_server_error() || s == http::StatusCode::TOO_MANY_REQUESTS)
            || damaged()
    }

    /// As the `io::Error` an upload stream returns (the data path answers 451, or 550 when
    /// the store refuses the key).
    pub(super) fn into_io(self) -> io::Error {
        tracing::warn!(error = %self, "object store upload failed");
        let kind = match self.status {
            Some(http::StatusCode::FORBIDDEN) => io::ErrorKind::PermissionDenied,
            Some(http::StatusCode::NOT_FOUND) => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status}: {}", self.message),
            None => write!(f, "request failed: {}", self.message),
        }
    }
}

/// Where an object is: its URL, and its `x-amz-copy-source`.
struct Object {
    url: String,
    source: String,
}

/// `req` with `metadata` as the object's user metadata (`x-amz-meta-*`).
fn with_metadata(mut req: http::request::Builder, metadata: &[(String, String)]) -> http::request::Builder {
    for (name, value) in metadata {
        req = req.header(format!("x-amz-meta-{name}"), value);
    }
    req
}

/// The text of the first element `name` in the XML `body`, unescaped. S3 answers some
/// requests (copies, completions) 200 as it starts, and may still report an error in the
/// body: an answer is a success only with the element the success has.
fn element(body: &[u8], name: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_reader(body);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) if e.local_name().as_ref() == name => {
                let text = reader.read_text(e.name()).ok()?;
                return quick_xml::escape::unescape(&text).ok().map(|t| t.into_owned());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// The start of an answer's body, for the log.
fn failure(body: &[u8]) -> String {
    String::from_utf8_lossy(body.get(..body.len().min(300)).unwrap_or_default()).into_owned()
}

/// How long the copy of `size` bytes may take: S3 copies on its side at a few hundred MB/s,
/// so 30 s and one more per 64 MiB (110 s at 5 GiB) leaves room; the session's stall timeout
/// (300 s by default) bounds the wait for the whole upload's end anyway.
fn timeout(size: u64) -> Duration {
    BASE_TIMEOUT + Duration::from_secs(size >> 26)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn base(config: S3Config) -> (String, String) {
        let client = reqwest::Client::new();
        let transport =
            HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(client.clone()));
        let copy = S3Api::new(&config, client, transport);
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
    fn answers_are_read_from_their_elements() {
        let part = br#"<?xml version="1.0" encoding="UTF-8"?>
<CopyPartResult><LastModified>2026-12-02T23:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></CopyPartResult>"#;
        assert_eq!(element(part, "ETag").unwrap(), "\"9b2cf535f27731c974343645a3985328\"");
        let created = b"<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
            <Bucket>b</Bucket><Key>k</Key><UploadId>a+b/c=</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(element(created, "UploadId").unwrap(), "a+b/c=");
        // A 200 whose body is an error is no success.
        let failed =
            b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>";
        assert_eq!(element(failed, "ETag"), None);
        assert_eq!(element(b"not xml <", "ETag"), None);
    }

    /// A stream of ready chunks, as a part's buffer gives them.
    struct Ready(std::collections::VecDeque<Bytes>);

    impl Stream for Ready {
        type Item = io::Result<Bytes>;
        fn poll_next(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.get_mut().0.pop_front().map(Ok))
        }
    }

    /// What `body` sends, until it ends or fails (at most 200,000 items).
    fn wire<S: Stream<Item = io::Result<Bytes>>>(body: &mut AwsChunked<S>) -> io::Result<Vec<u8>> {
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        let mut wire = Vec::new();
        for _ in 0..200_000 {
            match Pin::new(&mut *body).poll_next(&mut cx) {
                Poll::Ready(Some(chunk)) => wire.extend_from_slice(&chunk?),
                Poll::Ready(None) => return Ok(wire),
                Poll::Pending => panic!("a ready stream is never pending"),
            }
        }
        panic!("the body never ends");
    }

    fn pieces(data: &[u8], size: usize) -> Ready {
        Ready(data.chunks(size).map(Bytes::copy_from_slice).collect())
    }

    #[test]
    fn streamed_parts_are_one_aws_chunk_with_a_crc32_trailer() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        for (len, size) in [(70_000, 30_000), (70_000, 1), (100, 7), (0, 1)] {
            let data = &data[..len];
            let mut body = AwsChunked::new(data.len(), pieces(data, size));
            let (declared, crc) = (body.encoded_len(), body.crc32.clone());
            assert!(crc.get().is_none(), "no CRC before the trailer");
            let wire = wire(&mut body).unwrap();
            // zlib's CRC32 of these bytes, as S3 writes it (base64 of the big-endian bytes).
            let b64 = crc32_base64(crc32fast::hash(data));
            let mut expected = Vec::new();
            if len > 0 {
                expected.extend_from_slice(format!("{len:x}\r\n").as_bytes());
                expected.extend_from_slice(data);
                expected.extend_from_slice(b"\r\n");
            }
            expected.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{b64}\r\n\r\n").as_bytes());
            assert_eq!(wire, expected, "{len} bytes in pieces of {size}");
            assert_eq!(declared, wire.len(), "Content-Length is the framed length");
            assert_eq!(crc.get(), Some(&b64));
        }
        assert_eq!(crc32_base64(0x1234_5678), "EjRWeA==");
    }

    #[test]
    fn a_streamed_part_of_the_wrong_length_fails() {
        let data = [7u8; 1000];
        let short = wire(&mut AwsChunked::new(1001, pieces(&data, 300))).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        let long = wire(&mut AwsChunked::new(999, pieces(&data, 300))).unwrap_err();
        assert_eq!(long.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn timeouts_grow_with_size() {
        assert_eq!(timeout(0), BASE_TIMEOUT);
        assert_eq!(timeout(MAX_COPY), Duration::from_secs(30 + 80));
    }
}
