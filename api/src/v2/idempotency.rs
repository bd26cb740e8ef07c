//! `Idempotency-Key` on v2 POSTs: the first request with a key runs and its response is kept
//! for a day; a retry with the same key gets that response and changes nothing. A key reused
//! with another body is refused (422); a retry while the first still runs gets 409.
//!
//! A keyed command runs to its end even when its client goes away mid-request (it is detached
//! from the connection), and stores its response: the retry of a client that lost the answer
//! gets it. Its claim is a short lease ([`LEASE`]), so a command whose pod died before storing
//! the response holds its key for a minute at most; a retry after that runs again (and meets the
//! domain rules, e.g. "name taken", rather than acting twice).
//!
//! Each claim writes a marker of its own, with a random owner token, and the command stores its
//! response, or frees the key when it failed, only while the key still holds that marker. A
//! command that outlived its lease, whose key a retry claimed meanwhile, leaves the key to the
//! retry: its failure does not free the key for a third run next to the retry's, and its
//! response does not stand in for the retry's (its own client still gets it).
//!
//! The marker also answers pods of the previous release, which share the store during a rolling
//! deploy and take any value but `""` for a stored response: it is shaped as one, of the
//! request's fingerprint, answering 409 `request-in-progress`, with the owner token in a field
//! they ignore. They replay that 409 to a retry with the same body (another body gets 422, as
//! once the key is done). Their own claims, `""`, are running requests to this release; their
//! completions and releases stay unchecked until the last of them is replaced.
//!
//! A stored response is replayed to whoever sends the same key and body. On routes whose
//! response carries a token, the key is therefore a bearer secret: it must be at least
//! [`MIN_UNGUESSABLE_CHARS`] characters of the URL-safe alphabet (room for 128 random bits), and
//! clients must draw it from at least 128 random bits. The store itself holds no token: a stored
//! answer has `null` in its token's place, made again when it is replayed ([`TokenField`]).

use super::problem::Problem;
use super::tokens::hex;
use crate::context;
use crate::AppState;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use live::ports::{IdempotencyClaim, IdempotencyStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a finished request's response is kept for retries.
const KEEP: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a running request holds its key: longer than any command takes (store operations
/// time out within seconds), short enough that a pod's death does not block a retry for long.
pub const LEASE: Duration = Duration::from_secs(60);
/// Longest accepted key.
const MAX_KEY_CHARS: usize = 200;
/// Shortest key on routes whose response carries a token: 22 characters of a 64-letter alphabet
/// hold 132 bits.
pub const MIN_UNGUESSABLE_CHARS: usize = 22;

/// Which keys a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    /// Any key of 1 to 200 visible characters.
    Any,
    /// The response carries a token: keys of at least [`MIN_UNGUESSABLE_CHARS`] characters from
    /// `A–Z a–z 0–9 - _`, at most 200.
    Unguessable,
}

impl KeyRule {
    fn check(self, key: &str) -> Result<(), Problem> {
        let length = key.chars().count();
        let valid = match self {
            KeyRule::Any => (1..=MAX_KEY_CHARS).contains(&length),
            KeyRule::Unguessable => {
                (MIN_UNGUESSABLE_CHARS..=MAX_KEY_CHARS).contains(&length)
                    && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
        };
        if valid {
            return Ok(());
        }
        let detail = match self {
            KeyRule::Any => "Idempotency-Key must be 1 to 200 visible characters.".to_owned(),
            KeyRule::Unguessable => format!(
                "This response carries a token, so its Idempotency-Key must not be guessable: at least \
                 {MIN_UNGUESSABLE_CHARS} characters of A-Z, a-z, 0-9, '-' and '_' (e.g. 16 random bytes in hex)."
            ),
        };
        Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-idempotency-key", detail))
    }
}

/// The `Idempotency-Key` header's schema: 1 to 200 visible ASCII characters, spaces and tabs
/// allowed between them (HTTP drops blanks around a header value).
pub struct IdempotencyKey;

impl utoipa::PartialSchema for IdempotencyKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let visible = "[\\u0021-\\u007E]";
        let inner = "[\\u0009\\u0020-\\u007E]";
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_KEY_CHARS))
            .pattern(Some(format!("^{visible}(?:{inner}{{0,{}}}{visible})?$", MAX_KEY_CHARS - 2)))
            .into()
    }
}

impl utoipa::ToSchema for IdempotencyKey {}

/// The `Idempotency-Key` header's schema on the routes answered with a token: at least
/// [`MIN_UNGUESSABLE_CHARS`] characters of the URL-safe alphabet, at most 200.
pub struct UnguessableIdempotencyKey;

impl utoipa::PartialSchema for UnguessableIdempotencyKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(MIN_UNGUESSABLE_CHARS))
            .max_length(Some(MAX_KEY_CHARS))
            .pattern(Some(format!("^[A-Za-z0-9_-]{{{MIN_UNGUESSABLE_CHARS},{MAX_KEY_CHARS}}}$")))
            .into()
    }
}

impl utoipa::ToSchema for UnguessableIdempotencyKey {}

/// What a key holds: a finished request's response, or with `pending` the marker of a running
/// one (see the module documentation).
#[derive(Serialize, Deserialize)]
struct Stored {
    fingerprint: String,
    status: u16,
    body: Value,
    /// The owner token of a running request's claim; absent from responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
}

/// What a held key says.
enum Held {
    /// A request with this key is running.
    Running,
    /// A request with this key finished with this response.
    Finished(Stored),
}

impl Held {
    fn read(text: &str) -> Result<Held, Problem> {
        // `""`: claimed by a pod of the previous release.
        if text.is_empty() {
            return Ok(Held::Running);
        }
        let stored: Stored = serde_json::from_str(text).map_err(|_| internal())?;
        Ok(if stored.pending.is_some() { Held::Running } else { Held::Finished(stored) })
    }
}

/// The answer to a request whose key is held by a running request.
fn in_progress() -> Problem {
    let mut problem = Problem::new(
        StatusCode::CONFLICT,
        "request-in-progress",
        "A request with this Idempotency-Key is still running; retry shortly.",
    );
    problem.retry_after = Some(1);
    problem
}

/// The marker of a new claim of a request with `fingerprint`: a random owner token in a stored
/// 409 `request-in-progress`, the answer pods of the previous release replay from it (the
/// problem names the running request's id).
fn marker(fingerprint: &str) -> String {
    let problem = in_progress();
    let marker = Stored {
        fingerprint: fingerprint.to_owned(),
        status: problem.status.as_u16(),
        body: serde_json::to_value(problem.body()).expect("a problem body is JSON"),
        pending: Some(hex(&rand::random::<[u8; 16]>())),
    };
    serde_json::to_string(&marker).expect("a marker is JSON")
}

fn internal() -> Problem {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "An internal error occurred.")
}

/// A v2 answer: a status and a JSON body (`Value::Null` for none).
pub type Answer = (StatusCode, Value);

fn into_response((status, body): Answer) -> Response {
    if body.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(body)).into_response()
    }
}

fn unavailable(error: live::ports::LiveError) -> Problem {
    tracing::error!(cause = %error, "idempotency store unavailable");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency-unavailable",
        "A dependency is unavailable; try again shortly.",
    )
}

fn hex_digest(parts: &[&[u8]]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part);
        digest.update([0x1f]);
    }
    hex(&digest.finalize())
}

/// Runs `command` at most once per `Idempotency-Key` of this route (each call when there is no
/// key), under `rule`. `fingerprint` identifies the request body. With a key, the command runs
/// detached from the request: it finishes and stores its response even if the request is
/// dropped.
pub async fn once<F>(
    state: &AppState,
    headers: &HeaderMap,
    route: &str,
    rule: KeyRule,
    fingerprint: &[u8],
    command: F,
) -> Result<Response, Problem>
where
    F: Future<Output = Result<Answer, Problem>> + Send + 'static,
{
    once_in(state.idempotency.clone(), headers, route, rule, fingerprint, None, command).await
}

/// [`once`] for a command whose answer carries a token in `token.field`.
pub async fn once_issuing<F>(
    state: &AppState,
    headers: &HeaderMap,
    route: &str,
    fingerprint: &[u8],
    token: TokenField,
    command: F,
) -> Result<Response, Problem>
where
    F: Future<Output = Result<Answer, Problem>> + Send + 'static,
{
    once_in(state.idempotency.clone(), headers, route, KeyRule::Unguessable, fingerprint, Some(token), command).await
}

/// A token in a command's answer. Whoever reads the idempotency store (a replica, a backup,
/// `MONITOR`) must not find tokens to act with there, so the stored answer holds `null` in this
/// field, and a replay computes the token again from the rest of the answer: tokens are MACs of
/// what the answer names.
pub struct TokenField {
    /// The field of the answer's body that holds the token.
    pub field: &'static str,
    /// The token again, from the stored answer's body.
    pub again: MakeAgain,
}

/// Makes a token again from a stored answer's body.
pub type MakeAgain = Box<dyn FnOnce(&Value) -> Result<String, Problem> + Send>;

/// `body` as stored: without the token in `field`.
fn without_token(body: &Value, field: Option<&str>) -> Value {
    let mut stored = body.clone();
    if let Some(slot) = field.and_then(|field| stored.get_mut(field)) {
        *slot = Value::Null;
    }
    stored
}

/// A stored answer's body as it is replayed: with its token computed again, when it was left
/// out. (Answers stored by pods of the previous release hold theirs.)
fn with_token(mut body: Value, token: Option<TokenField>) -> Result<Value, Problem> {
    if let Some(TokenField { field, again }) = token {
        if body.get(field).is_some_and(Value::is_null) {
            body[field] = Value::String(again(&body)?);
        }
    }
    Ok(body)
}

/// [`once`] with the idempotency store given.
async fn once_in<F>(
    store: Arc<dyn IdempotencyStore>,
    headers: &HeaderMap,
    route: &str,
    rule: KeyRule,
    fingerprint: &[u8],
    token: Option<TokenField>,
    command: F,
) -> Result<Response, Problem>
where
    F: Future<Output = Result<Answer, Problem>> + Send + 'static,
{
    let Some(key) = headers.get("idempotency-key") else {
        return command.await.map(into_response);
    };
    let key = key.to_str().map(str::trim).unwrap_or_default();
    rule.check(key)?;
    // Stored under a digest: the store never holds a key that would replay someone's token.
    let scoped = hex_digest(&[route.as_bytes(), key.as_bytes()]);
    let fingerprint = hex_digest(&[fingerprint]);
    let marker = marker(&fingerprint);
    let text = match store.claim(&scoped, &marker, LEASE).await.map_err(unavailable)? {
        IdempotencyClaim::Claimed => {
            let field = token.map(|token| token.field);
            return run_claimed(store, scoped, marker, fingerprint, field, command).await;
        }
        IdempotencyClaim::Held(text) => text,
    };
    let stored = match Held::read(&text)? {
        Held::Running => return Err(in_progress()),
        Held::Finished(stored) => stored,
    };
    if stored.fingerprint != fingerprint {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "This Idempotency-Key was used with a different request.",
        ));
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = into_response((status, with_token(stored.body, token)?));
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

/// Runs the command of a key claimed with `marker`, detached from the request, then stores its
/// response or frees the key, while the key is still held by that claim.
async fn run_claimed<F>(
    store: Arc<dyn IdempotencyStore>,
    scoped: String,
    marker: String,
    fingerprint: String,
    token_field: Option<&'static str>,
    command: F,
) -> Result<Response, Problem>
where
    F: Future<Output = Result<Answer, Problem>> + Send + 'static,
{
    let detached = context::detached(async move {
        let outcome = command.await;
        match &outcome {
            Ok((status, body)) => {
                let body = without_token(body, token_field);
                let stored = Stored { fingerprint, status: status.as_u16(), body, pending: None };
                let text = serde_json::to_string(&stored).unwrap_or_default();
                match store.complete(&scoped, &marker, &text, KEEP).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("an idempotent command outlived its lease; its response was not kept"),
                    Err(error) => tracing::warn!(cause = %error, "could not keep an idempotent response"),
                }
            }
            Err(_) => {
                let _ = store.release(&scoped, &marker).await;
            }
        }
        outcome
    });
    match tokio::spawn(detached).await {
        Ok(outcome) => outcome.map(into_response),
        Err(error) => {
            tracing::error!(%error, "an idempotent command failed");
            Err(internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use live::ports::LiveError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const KEY: &str = "0f8e2c4a9b7d41c6a3e5f7091b2d4c6e";

    fn keyed() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", HeaderValue::from_static(KEY));
        headers
    }

    async fn body(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_command_whose_request_was_dropped_finishes_and_a_retry_gets_its_answer() {
        let store: Arc<dyn IdempotencyStore> = Arc::new(infrastructure::live::MemorySharedState::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let command = {
            let runs = Arc::clone(&runs);
            async move {
                let _ = started.send(());
                let _ = gate.await;
                runs.fetch_add(1, Ordering::SeqCst);
                Ok((StatusCode::CREATED, serde_json::json!({"organiserToken": "o.1234"})))
            }
        };
        let request = tokio::spawn({
            let store = Arc::clone(&store);
            async move { once_in(store, &keyed(), "create", KeyRule::Unguessable, b"{}", None, command).await }
        });
        let never = || async { panic!("a retry must not run the command again") };
        running.await.unwrap();
        // While it runs, a retry is told so.
        let retried = once_in(Arc::clone(&store), &keyed(), "create", KeyRule::Unguessable, b"{}", None, never()).await;
        assert_eq!(retried.unwrap_err().kind, "request-in-progress");
        // The client goes away: its request is dropped mid-command.
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        release.send(()).unwrap();
        // The command still finishes and its answer is what the retry gets.
        let retry = async {
            loop {
                match once_in(Arc::clone(&store), &keyed(), "create", KeyRule::Unguessable, b"{}", None, never()).await
                {
                    Ok(answer) => break answer,
                    Err(problem) => {
                        assert_eq!(problem.kind, "request-in-progress");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), retry).await.expect("the retry gets the answer");
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert_eq!(answer.headers()["idempotent-replayed"], "true");
        assert_eq!(body(answer).await, serde_json::json!({"organiserToken": "o.1234"}));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_is_left_out_of_the_store_and_made_again_for_a_replay() {
        let store: Arc<dyn IdempotencyStore> = Arc::new(infrastructure::live::MemorySharedState::default());
        let token = || TokenField {
            field: "playerToken",
            again: Box::new(|answer| Ok(format!("p.again-for-{}", answer["playerId"].as_str().unwrap()))),
        };
        let never = || async { panic!("a retry must not run the command again") };
        let command =
            async { Ok((StatusCode::CREATED, serde_json::json!({"playerId": "p1", "playerToken": "p.issued"}))) };
        let keyed = keyed();
        let first = once_in(Arc::clone(&store), &keyed, "join", KeyRule::Unguessable, b"{}", Some(token()), command);
        assert_eq!(body(first.await.unwrap()).await["playerToken"], "p.issued");
        let scoped = hex_digest(&[b"join", KEY.as_bytes()]);
        let IdempotencyClaim::Held(stored) = store.claim(&scoped, "other", LEASE).await.unwrap() else {
            panic!("the answer is kept")
        };
        assert!(!stored.contains("p.issued") && stored.contains(r#""playerToken":null"#), "{stored}");
        let replay = once_in(Arc::clone(&store), &keyed, "join", KeyRule::Unguessable, b"{}", Some(token()), never());
        let replay = replay.await.unwrap();
        assert_eq!(replay.status(), StatusCode::CREATED);
        assert_eq!(body(replay).await, serde_json::json!({"playerId": "p1", "playerToken": "p.again-for-p1"}));

        // An answer a pod of the previous release kept holds its token, and is replayed as kept.
        let scoped = hex_digest(&[b"join-before", KEY.as_bytes()]);
        let marker = marker(&hex_digest(&[b"{}"]));
        assert!(matches!(store.claim(&scoped, &marker, LEASE).await.unwrap(), IdempotencyClaim::Claimed));
        let kept = Stored {
            fingerprint: hex_digest(&[b"{}"]),
            status: 201,
            body: serde_json::json!({"playerId": "p2", "playerToken": "p.kept"}),
            pending: None,
        };
        assert!(store.complete(&scoped, &marker, &serde_json::to_string(&kept).unwrap(), KEEP).await.unwrap());
        let replay = once_in(store, &keyed, "join-before", KeyRule::Unguessable, b"{}", Some(token()), never());
        assert_eq!(body(replay.await.unwrap()).await["playerToken"], "p.kept");
    }

    #[tokio::test]
    async fn a_running_command_holds_its_key_for_a_short_lease_only() {
        // A store that records the time-to-live of each claim.
        #[derive(Default)]
        struct Recording(std::sync::Mutex<Vec<Duration>>);
        #[async_trait::async_trait]
        impl IdempotencyStore for Recording {
            async fn claim(&self, _: &str, _: &str, ttl: Duration) -> Result<IdempotencyClaim, LiveError> {
                self.0.lock().unwrap().push(ttl);
                Ok(IdempotencyClaim::Claimed)
            }
            async fn complete(&self, _: &str, _: &str, _: &str, ttl: Duration) -> Result<bool, LiveError> {
                self.0.lock().unwrap().push(ttl);
                Ok(true)
            }
            async fn release(&self, _: &str, _: &str) -> Result<bool, LiveError> {
                Ok(true)
            }
        }
        let store = Arc::new(Recording::default());
        let done = async { Ok((StatusCode::OK, Value::Null)) };
        once_in(store.clone(), &keyed(), "rename", KeyRule::Any, b"", None, done).await.unwrap();
        assert_eq!(*store.0.lock().unwrap(), vec![LEASE, KEEP], "claimed for the lease, kept for a day once done");
        assert!(LEASE <= Duration::from_secs(60));
    }

    /// The in-memory store, except that the lease of its first claim ends at once: that claim's
    /// command outlives it.
    #[derive(Default)]
    struct FirstLeaseEnds {
        inner: infrastructure::live::MemorySharedState,
        ended: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl IdempotencyStore for FirstLeaseEnds {
        async fn claim(&self, key: &str, marker: &str, ttl: Duration) -> Result<IdempotencyClaim, LiveError> {
            let ttl = if self.ended.swap(true, Ordering::SeqCst) { ttl } else { Duration::ZERO };
            self.inner.claim(key, marker, ttl).await
        }
        async fn complete(&self, key: &str, marker: &str, response: &str, ttl: Duration) -> Result<bool, LiveError> {
            self.inner.complete(key, marker, response, ttl).await
        }
        async fn release(&self, key: &str, marker: &str) -> Result<bool, LiveError> {
            self.inner.release(key, marker).await
        }
    }

    /// A command that counts its run, says when it started and ends with `outcome` once let go.
    fn gated(
        runs: &Arc<AtomicUsize>,
        outcome: impl FnOnce() -> Result<Answer, Problem> + Send + 'static,
    ) -> (
        impl Future<Output = Result<Answer, Problem>> + Send + 'static,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let runs = Arc::clone(runs);
        let command = async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let _ = started.send(());
            let _ = gate.await;
            outcome()
        };
        (command, running, release)
    }

    /// A command that counts its run and answers at once.
    fn counted(runs: &Arc<AtomicUsize>) -> impl Future<Output = Result<Answer, Problem>> + Send + 'static {
        let runs = Arc::clone(runs);
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok((StatusCode::CREATED, serde_json::json!({"playerToken": "p.third"})))
        }
    }

    fn send(
        store: &Arc<FirstLeaseEnds>,
        command: impl Future<Output = Result<Answer, Problem>> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<Response, Problem>> {
        let store: Arc<dyn IdempotencyStore> = store.clone();
        tokio::spawn(async move { once_in(store, &keyed(), "join", KeyRule::Unguessable, b"{}", None, command).await })
    }

    #[tokio::test]
    async fn a_command_that_outlives_its_lease_and_fails_leaves_the_retrys_claim_alone() {
        let store = Arc::new(FirstLeaseEnds::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let down = || Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "dependency-unavailable", "down"));
        let (first, first_started, end_first) = gated(&runs, down);
        let first = send(&store, first);
        first_started.await.unwrap();
        // Its lease has ended: a retry claims the key and runs.
        let answer = || Ok((StatusCode::CREATED, serde_json::json!({"playerToken": "p.retry"})));
        let (retry, retry_started, end_retry) = gated(&runs, answer);
        let retry = send(&store, retry);
        retry_started.await.unwrap();
        // The first command fails while the retry still runs.
        end_first.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap_err().kind, "dependency-unavailable");
        // A third request is told the retry still runs; it does not run the command a third time.
        let third = send(&store, counted(&runs)).await.unwrap();
        assert_eq!(third.map(|r| r.status()).unwrap_err().kind, "request-in-progress");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        end_retry.send(()).unwrap();
        assert_eq!(retry.await.unwrap().unwrap().status(), StatusCode::CREATED);
        let replayed = send(&store, counted(&runs)).await.unwrap().unwrap();
        assert_eq!(replayed.headers()["idempotent-replayed"], "true");
        assert_eq!(body(replayed).await, serde_json::json!({"playerToken": "p.retry"}));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_command_that_outlives_its_lease_and_succeeds_does_not_answer_for_the_retry() {
        let store = Arc::new(FirstLeaseEnds::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let first_answer = || Ok((StatusCode::CREATED, serde_json::json!({"playerToken": "p.first"})));
        let (first, first_started, end_first) = gated(&runs, first_answer);
        let first = send(&store, first);
        first_started.await.unwrap();
        let retry_answer = || Ok((StatusCode::CREATED, serde_json::json!({"playerToken": "p.retry"})));
        let (retry, retry_started, end_retry) = gated(&runs, retry_answer);
        let retry = send(&store, retry);
        retry_started.await.unwrap();
        // The first command ends well; its own client gets its answer.
        end_first.send(()).unwrap();
        assert_eq!(body(first.await.unwrap().unwrap()).await, serde_json::json!({"playerToken": "p.first"}));
        // The key is still the running retry's.
        let third = send(&store, counted(&runs)).await.unwrap();
        assert_eq!(third.map(|r| r.status()).unwrap_err().kind, "request-in-progress");
        end_retry.send(()).unwrap();
        assert_eq!(body(retry.await.unwrap().unwrap()).await, serde_json::json!({"playerToken": "p.retry"}));
        let replayed = send(&store, counted(&runs)).await.unwrap().unwrap();
        assert_eq!(body(replayed).await, serde_json::json!({"playerToken": "p.retry"}));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    /// How a pod of the previous release answered a key holding `text`, for a request with body
    /// `fingerprint` (its code: its Redis store took `""` for pending and anything else for done).
    fn previous_release(text: &str, fingerprint: &[u8]) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        struct Stored {
            fingerprint: String,
            status: u16,
            body: Value,
        }
        let fingerprint = hex_digest(&[fingerprint]);
        if text.is_empty() {
            return Err(Problem::new(StatusCode::CONFLICT, "request-in-progress", "still running"));
        }
        let stored: Stored = serde_json::from_str(text).map_err(|_| {
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "An internal error occurred.")
        })?;
        if stored.fingerprint != fingerprint {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "This Idempotency-Key was used with a different request.",
            ));
        }
        let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
        let mut response = into_response((status, stored.body));
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        Ok(response)
    }

    /// What the store holds for [`KEY`] on `route`, as another pod's claim finds it.
    async fn held(store: &Arc<dyn IdempotencyStore>, route: &str) -> String {
        let scoped = hex_digest(&[route.as_bytes(), KEY.as_bytes()]);
        match store.claim(&scoped, "another pod's marker", LEASE).await.unwrap() {
            IdempotencyClaim::Held(text) => text,
            IdempotencyClaim::Claimed => panic!("the key was free"),
        }
    }

    #[tokio::test]
    async fn pods_of_the_previous_release_answer_a_running_request_with_409_and_read_its_response() {
        let store: Arc<dyn IdempotencyStore> = Arc::new(infrastructure::live::MemorySharedState::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let anna = br#"{"name":"Anna"}"#;
        let answer = || Ok((StatusCode::CREATED, serde_json::json!({"playerToken": "p.anna"})));
        let (command, started, end) = gated(&runs, answer);
        let request = tokio::spawn({
            let store = Arc::clone(&store);
            async move { once_in(store, &keyed(), "join", KeyRule::Unguessable, anna, None, command).await }
        });
        started.await.unwrap();

        // While it runs, an old pod replays the marker: 409 request-in-progress for the same body.
        let running = previous_release(&held(&store, "join").await, anna).unwrap();
        assert_eq!(running.status(), StatusCode::CONFLICT);
        assert_eq!(running.headers()["idempotent-replayed"], "true");
        let problem = body(running).await;
        assert_eq!(
            (problem["type"].as_str(), problem["status"].as_u64()),
            (Some("urn:lct:problem:request-in-progress"), Some(409))
        );
        // Another body is refused as a reused key.
        let other = previous_release(&held(&store, "join").await, br#"{"name":"Bob"}"#).unwrap_err();
        assert_eq!(other.kind, "idempotency-key-reused");

        // Once done, an old pod replays the response as before.
        end.send(()).unwrap();
        assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::CREATED);
        let done = previous_release(&held(&store, "join").await, anna).unwrap();
        assert_eq!(done.status(), StatusCode::CREATED);
        assert_eq!(body(done).await, serde_json::json!({"playerToken": "p.anna"}));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_key_claimed_by_a_pod_of_the_previous_release_is_a_running_request() {
        let store: Arc<dyn IdempotencyStore> = Arc::new(infrastructure::live::MemorySharedState::default());
        let runs = Arc::new(AtomicUsize::new(0));
        // An old pod claims with an empty value.
        let scoped = hex_digest(&[b"join", KEY.as_bytes()]);
        assert_eq!(store.claim(&scoped, "", LEASE).await.unwrap(), IdempotencyClaim::Claimed);
        let retry =
            once_in(Arc::clone(&store), &keyed(), "join", KeyRule::Unguessable, b"{}", None, counted(&runs)).await;
        let problem = retry.map(|r| r.status()).unwrap_err();
        assert_eq!((problem.kind, problem.retry_after), ("request-in-progress", Some(1)));
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        assert_eq!(held(&store, "join").await, "", "the old pod's claim is left to it");
    }

    #[test]
    fn keys_of_token_routes_must_be_long_and_of_the_url_safe_alphabet() {
        assert!(KeyRule::Any.check("k").is_ok());
        assert!(KeyRule::Any.check("").is_err());
        assert!(KeyRule::Any.check(&"k".repeat(201)).is_err());
        assert!(KeyRule::Unguessable.check("0f8e2c4a9b7d41c6a3e5f7091b2d4c6e").is_ok());
        assert!(KeyRule::Unguessable.check("Q2xhcmEncyBuaWdodCBvdXQ").is_ok());
        assert!(KeyRule::Unguessable.check("6f1c1a2e-4b7d-4c6a-9e5f-7091b2d4c6e0").is_ok());
        assert!(KeyRule::Unguessable.check("abcdefghijklmnopqrstu").is_err(), "21 characters");
        assert!(KeyRule::Unguessable.check("abcdefghijklmnopqrstu!").is_err());
        assert!(KeyRule::Unguessable.check("abcdefghij klmnopqrstuv").is_err());
        assert!(KeyRule::Unguessable.check(&"a".repeat(201)).is_err());
    }
}
