//! Operations end to end: the request-log line and its fields, shipping to Elasticsearch (exact
//! `_bulk` body, index name, ids, template, credentials, and request latency while Elasticsearch
//! hangs), traces to Elastic APM, and the Prometheus metrics after real traffic.
//!
//! No Elasticsearch or APM Server exists on the machines these tests run on. [`StandIn`] is a
//! small HTTP listener that stands in for their HTTP APIs: it records each request and answers
//! like the real servers do (or, when told, refuses the template, fails a `_bulk` with 503 or
//! never answers). It is a test double, not the real
//! thing; the shipper and exporter speak to it exactly as they would to the real servers.

mod common;

use common::redis_server::RedisServer;
use common::ws::Live;
use common::*;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for something that happens in the background.
const PATIENCE: Duration = Duration::from_secs(20);

// --- the stand-in HTTP server -----------------------------------------------------------------

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// A test double standing in for the HTTP API of Elasticsearch (`PUT _index_template/...`,
/// `POST _bulk`) and of APM Server's OTLP intake (`POST /v1/traces`).
struct StandIn {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Answers>,
}

/// How the stand-in answers; tests change it while it runs.
struct Answers {
    /// While false, `_bulk` requests are read and never answered, like a hung Elasticsearch.
    bulk: AtomicBool,
    /// The status of `PUT _index_template/...` (403 is what a user without
    /// `manage_index_templates` gets).
    template_status: AtomicU16,
    /// This many `_bulk` requests are answered 503 before the next is taken.
    failing_bulks: AtomicUsize,
}

impl StandIn {
    async fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Answers {
            bulk: AtomicBool::new(true),
            template_status: AtomicU16::new(200),
            failing_bulks: AtomicUsize::new(0),
        });
        let (log, how) = (Arc::clone(&received), Arc::clone(&answers));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&log), Arc::clone(&how)));
            }
        });
        StandIn { url, received, answers }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn bulk_requests(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path == "/_bulk").collect()
    }

    fn template_requests(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path.starts_with("/_index_template/")).collect()
    }
}

/// Serves one connection: HTTP/1.1 requests with a `content-length` body, kept alive.
async fn serve(stream: TcpStream, log: Arc<Mutex<Vec<Received>>>, answers: Arc<Answers>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let is_bulk = path == "/_bulk";
        log.lock().unwrap().push(Received { method, path: path.clone(), headers, body });
        if is_bulk && !answers.bulk.load(Ordering::SeqCst) {
            // Hung: hold the connection open and never answer.
            std::future::pending::<()>().await;
        }
        let template_status = answers.template_status.load(Ordering::SeqCst);
        let fail_bulk = is_bulk
            && answers.failing_bulks.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let (status, content_type, answer) = match path.as_str() {
            "/_bulk" if fail_bulk => (503, "application/json", r#"{"error":"unavailable","status":503}"#.to_owned()),
            "/_bulk" => (200, "application/json", r#"{"took":1,"errors":false,"items":[]}"#.to_owned()),
            "/v1/traces" => (200, "application/x-protobuf", String::new()),
            _ if path.starts_with("/_index_template/") && template_status != 200 => {
                let error = format!(r#"{{"error":{{"type":"security_exception"}},"status":{template_status}}}"#);
                (template_status, "application/json", error)
            }
            _ => (200, "application/json", r#"{"acknowledged":true}"#.to_owned()),
        };
        let response = format!(
            "HTTP/1.1 {status} Whatever\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

// --- helpers ------------------------------------------------------------------------------------

/// Polls `check` until it returns `Some` or the patience runs out.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The request-log line of the request with `id`.
fn request_line(server: &Server, id: &str) -> Option<Value> {
    server.log_lines().into_iter().find(|l| l["message"] == "request finished" && l["RequestId"] == id)
}

async fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// The whole `/metrics` exposition.
async fn scrape(http: &reqwest::Client, server: &Server) -> String {
    let response = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    response.text().await.unwrap()
}

/// The value of one series (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

// --- request logs ---------------------------------------------------------------------------------

/// Checks every field of one request-log line.
fn assert_request_line(line: &Value, id: &str, level: &str, method: &str, route: &str, path: &str, status: u16) {
    assert_eq!(line["RequestId"], id, "{line}");
    assert_eq!(line["message"], "request finished");
    assert_eq!(line["log.level"], level, "{line}");
    assert_eq!(line["Method"], method);
    assert_eq!(line["http.request.method"], method);
    assert_eq!(line["RequestPath"], route, "the route template");
    assert_eq!(line["url.path"], path);
    assert_eq!(line["StatusCode"], status);
    assert_eq!(line["http.response.status_code"], status);
    let elapsed_ms = line["Elapsed"].as_f64().expect("Elapsed in ms");
    let duration_ns = line["event.duration"].as_u64().expect("event.duration in ns");
    assert!((0.0..10_000.0).contains(&elapsed_ms), "{elapsed_ms}");
    assert!(
        (duration_ns as f64 / 1e6 - elapsed_ms).abs() < 0.01,
        "Elapsed {elapsed_ms} ms vs event.duration {duration_ns} ns"
    );
    let timestamp = line["@timestamp"].as_str().expect("@timestamp");
    assert!(timestamp.len() == 24 && timestamp.ends_with('Z'), "{timestamp}");
    assert_eq!(line["service.name"], "lct");
    assert_eq!(line["service.environment"], "staging");
    assert_eq!(line["service.node.name"], "lct-test-pod-1");
    assert!(line.get("error").is_none(), "`error` is always error.message");
}

#[tokio::test]
async fn every_request_writes_one_line_with_all_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("LCT_ENVIRONMENT", "staging"), ("LCT_POD_NAME", "lct-test-pod-1")];
    let server = Server::start(dir.path(), &env).await;
    let http = client();

    let created = http
        .post(server.url("/api/Tournament/create"))
        .json(&serde_json::json!({"name": "Logs night", "playerLimit": 4}))
        .send()
        .await
        .unwrap();
    let created_id = request_id(&created).await;
    let tid: String = created.json().await.unwrap();
    let fetched = http.get(server.url(&format!("/api/Tournament?id={tid}"))).send().await.unwrap();
    let fetched_id = request_id(&fetched).await;
    let refused = join(&http, &server.base, &tid, "", "Nowak").await;
    let refused_id = request_id(&refused).await;
    assert_eq!(refused.status(), 400);
    let missing = http.get(server.url("/no/such/route")).send().await.unwrap();
    let missing_id = request_id(&missing).await;

    let line = eventually("the create line", || request_line(&server, &created_id)).await;
    assert_request_line(&line, &created_id, "info", "POST", "/api/tournament/create", "/api/tournament/create", 200);
    assert_eq!(line["TournamentId"], tid.as_str());
    let line = eventually("the get line", || request_line(&server, &fetched_id)).await;
    assert_request_line(&line, &fetched_id, "info", "GET", "/api/tournament", "/api/tournament", 200);
    assert_eq!(line["TournamentId"], tid.as_str());
    let line = eventually("the refusal line", || request_line(&server, &refused_id)).await;
    assert_request_line(
        &line,
        &refused_id,
        "warn",
        "POST",
        "/api/tournament/assignplayer",
        "/api/tournament/assignplayer",
        400,
    );
    let line = eventually("the 404 line", || request_line(&server, &missing_id)).await;
    assert_request_line(&line, &missing_id, "warn", "GET", "/no/such/route", "/no/such/route", 404);
    assert!(line.get("TournamentId").is_none(), "no tournament known");
    assert!(line.get("trace.id").is_none(), "no trace ids while APM is off");

    let lines = server.log_lines();
    assert_eq!(
        lines.iter().filter(|l| l["RequestId"] == created_id.as_str() && l["message"] == "request finished").count(),
        1
    );
    let listening = lines.iter().find(|l| l["message"] == "listening").expect("the listening line");
    assert!(listening["addr"].as_str().is_some());
    assert_eq!(listening["log.level"], "info");
}

/// A pod whose stdout nobody reads (a log collector stuck, a full disk under the container's
/// log) keeps answering: log lines wait in a bounded buffer, then are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_are_answered_while_nobody_reads_the_pod_s_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lct"))
        .env_clear()
        .env("LCT_LISTEN", "127.0.0.1:0")
        .env("LCT_DATA_DIR", dir.path())
        .env("LCT_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Its address, from the first lines; after those, stdout is never read again.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line: Value = serde_json::from_str(&line).unwrap();
            if line["message"] == "listening" {
                return line["addr"].as_str().unwrap().to_owned();
            }
        }
        panic!("lct exited before listening");
    })
    .await
    .expect("lct reported its address");
    let base = format!("http://{address}");
    // Each answer writes a line of about 400 bytes: far more than the pipe holds, and more than
    // the pod keeps waiting.
    let http = reqwest::Client::builder().timeout(PATIENCE).build().unwrap();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{base}/liveness"));
            tokio::spawn(async move {
                for _ in 0..700 {
                    let answer = http.get(&url).send().await.expect("answered while stdout is not read");
                    assert_eq!(answer.status(), 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let dropped = sample(&metrics, r#"lct_log_lines_dropped_total{destination="stdout"}"#)
        .unwrap_or_else(|| panic!("no count of dropped lines in {metrics}"));
    assert!(dropped > 0.0, "{dropped}");
    drop(lines);
}

#[tokio::test]
async fn a_request_whose_client_went_away_is_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    // The creation's commit is held back for three seconds: the client gives up before.
    let env = [("LCT_FAULT_AFTER_APPEND", "TournamentCreated:delay-3000")];
    let server = Server::start(dir.path(), &env).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let gave_up = impatient
        .post(server.url("/api/Tournament/create"))
        .json(&serde_json::json!({"name": "Impatient night", "playerLimit": 4}))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client gave up: {gave_up:?}");
    drop(impatient);
    let line = eventually("the abandoned request's line", || {
        server.log_lines().into_iter().find(|l| l["RequestPath"] == "/api/tournament/create" && l["StatusCode"] == 499)
    })
    .await;
    assert_eq!(line["message"], "request abandoned by its client");
    assert_eq!(line["log.level"], "warn");
    assert!(line["RequestId"].is_string());
    let series = r#"lct_http_requests_total{route="/api/tournament/create",method="POST",status="499"}"#;
    scrape_until(&client(), &server, series, 1.0).await;
}

#[tokio::test]
async fn faults_log_at_error_with_their_cause_and_request_id_and_never_a_secret() {
    // Whatever the level: with `warn`, the request's own info line is not written, yet its
    // fault line carries its id.
    for log in ["debug", "warn,lct=info"] {
        a_fault_logs_with_its_cause_and_request_id(log).await;
    }
}

async fn a_fault_logs_with_its_cause_and_request_id(log: &str) {
    let dir = tempfile::tempdir().unwrap();
    let uri = "mongodb://lct:mongo-secret-5d1@127.0.0.1:1/?replicaSet=rs0&serverSelectionTimeoutMS=1000";
    let env = [
        ("LCT_ENVIRONMENT", "staging"),
        ("LCT_POD_NAME", "lct-test-pod-1"),
        ("LCT_MONGODB_URI", uri),
        ("LCT_LOG", log),
    ];
    let server = Server::start(dir.path(), &env).await;
    let http = client();
    let response = http
        .post(server.url("/api/Tournament/create"))
        .json(&serde_json::json!({"name": "Fault night", "playerLimit": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let id = request_id(&response).await;

    let line = eventually("the 503 line", || request_line(&server, &id)).await;
    assert_request_line(&line, &id, "error", "POST", "/api/tournament/create", "/api/tournament/create", 503);
    let fault = eventually(&format!("the fault line with LCT_LOG={log}"), || {
        server
            .log_lines()
            .into_iter()
            .find(|l| l["RequestId"] == id.as_str() && l["message"] == "event store unavailable")
    })
    .await;
    assert_eq!(fault["log.level"], "error");
    let cause = fault["error.message"].as_str().expect("the cause as error.message");
    assert!(cause.starts_with("event store unavailable"), "{cause}");
    assert!(fault["error.stack_trace"].as_str().expect("the cause chain").starts_with(cause));
    assert!(fault.get("error").is_none());

    let all = server.logs.lock().unwrap().join("\n");
    assert!(!all.contains("mongo-secret-5d1"), "a secret reached the logs");
}

// --- shipping to Elasticsearch -------------------------------------------------------------

#[tokio::test]
async fn request_logs_reach_elasticsearch_as_the_exact_bulk_body_in_the_monthly_index() {
    let elasticsearch = StandIn::start().await;
    let url = elasticsearch.url.replace("http://", "http://elastic:es-secret-93b@");
    let dir = tempfile::tempdir().unwrap();
    let env =
        [("LCT_ENVIRONMENT", "Staging"), ("LCT_POD_NAME", "lct-test-pod-1"), ("LCT_ELASTICSEARCH_URL", url.as_str())];
    let server = Server::start(dir.path(), &env).await;
    let http = client();

    let tid = create(&http, &server, "Shipping night", 4).await;
    tournament(&http, &server.base, &tid).await;
    let missing = http.get(server.url("/nothing/here")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // Three request lines (the 404 at warn) and nothing else of warn or above happened.
    let bodies = eventually("three shipped documents", || {
        let bodies: Vec<String> = elasticsearch.bulk_requests().iter().map(Received::text).collect();
        (bodies.iter().map(|b| b.lines().count()).sum::<usize>() >= 6).then_some(bodies)
    })
    .await;
    let shipped_lines: Vec<String> = server
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            let logger = line["log.logger"].as_str().unwrap_or_default();
            let problem = line["log.level"] == "warn" || line["log.level"] == "error";
            !logger.starts_with("lct::telemetry") && (logger == "api::context" || problem)
        })
        .cloned()
        .collect();
    assert_eq!(shipped_lines.len(), 3, "{shipped_lines:#?}");
    let ids: Vec<String> = bodies.iter().flat_map(|b| bulk_ids(b)).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "{ids:?}");
    let mut expected = String::new();
    for (line, id) in shipped_lines.iter().zip(&ids) {
        let json: Value = serde_json::from_str(line).unwrap();
        let month = &json["@timestamp"].as_str().unwrap()[..7];
        expected
            .push_str(&format!("{{\"create\":{{\"_index\":\"lct-api-staging-{month}\",\"_id\":\"{id}\"}}}}\n{line}\n"));
    }
    assert_eq!(bodies.concat(), expected, "the _bulk bodies are the stdout lines, each after its create action");

    let requests = elasticsearch.received();
    let template = &requests[0];
    assert_eq!(
        (template.method.as_str(), template.path.as_str()),
        ("PUT", "/_index_template/lct-api"),
        "template first"
    );
    let deployed: Value =
        serde_json::from_str(include_str!("../deploy/elasticsearch/lct-api-index-template.json")).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&template.body).unwrap(), deployed, "the deployed template");
    let bulk = elasticsearch.bulk_requests().remove(0);
    assert_eq!(bulk.method, "POST");
    assert_eq!(bulk.header("content-type"), Some("application/x-ndjson"));
    // The URL's credentials become basic authentication and appear nowhere in the logs.
    assert_eq!(bulk.header("authorization"), Some("Basic ZWxhc3RpYzplcy1zZWNyZXQtOTNi"));
    let all = server.logs.lock().unwrap().join("\n");
    assert!(!all.contains("es-secret-93b"), "a secret reached the logs");
}

/// The `_id` of each action of a `_bulk` body.
fn bulk_ids(body: &str) -> Vec<String> {
    body.lines()
        .step_by(2)
        .map(|action| {
            let action: Value = serde_json::from_str(action).unwrap();
            action["create"]["_id"].as_str().filter(|id| !id.is_empty()).expect("an _id in every action").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_retried_batch_carries_the_ids_of_its_first_attempt() {
    // Elasticsearch may have indexed a batch whose answer never came; ids make the retry
    // harmless.
    let elasticsearch = StandIn::start().await;
    elasticsearch.answers.failing_bulks.store(1, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_ELASTICSEARCH_URL", elasticsearch.url.as_str())]).await;
    let http = client();
    create(&http, &server, "Retry night", 4).await;

    let bulks = eventually("a batch and its retry", || {
        let bulks = elasticsearch.bulk_requests();
        (bulks.len() >= 2).then_some(bulks)
    })
    .await;
    let first = bulk_ids(&bulks[0].text());
    assert!(!first.is_empty());
    assert_eq!(bulk_ids(&bulks[1].text()), first, "the retry sends the same ids");
    assert_eq!(bulks[1].text(), bulks[0].text(), "the retry sends the same body");
    let shipped = r#"lct_log_events_shipped_total{destination="elasticsearch"}"#;
    scrape_until(&http, &server, shipped, first.len() as f64).await;
}

#[tokio::test]
async fn requests_keep_their_latency_while_elasticsearch_stops_answering() {
    let elasticsearch = StandIn::start().await;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let plain = Server::start(dir_a.path(), &[]).await;
    let env = [("LCT_ELASTICSEARCH_URL", elasticsearch.url.as_str()), ("LCT_ELASTICSEARCH_BUFFER", "20")];
    let shipping = Server::start(dir_b.path(), &env).await;
    let http = client();
    let on_plain = create(&http, &plain, "Latency night", 4).await;
    let on_shipping = create(&http, &shipping, "Latency night", 4).await;

    // Elasticsearch answers at first, then stops answering.
    eventually("the first documents shipped", || (!elasticsearch.bulk_requests().is_empty()).then_some(())).await;
    elasticsearch.answers.bulk.store(false, Ordering::SeqCst);

    // Alternate the two servers so that machine noise hits both alike.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        for (server, id, samples) in [(&plain, &on_plain, &mut without), (&shipping, &on_shipping, &mut with)] {
            let started = Instant::now();
            let response = http.get(server.url(&format!("/api/Tournament?id={id}"))).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
            samples.push(started.elapsed());
        }
    }
    let (p50_without, p50_with) = (median(without), median(with));
    let ratio = p50_with.as_secs_f64() / p50_without.as_secs_f64();
    eprintln!("p50 {p50_with:?} while Elasticsearch hangs, {p50_without:?} without it (ratio {ratio:.2})");
    assert!(ratio < 3.0, "p50 {p50_with:?} while Elasticsearch hangs vs {p50_without:?} without it (ratio {ratio:.2})");

    // The buffer of 20 documents fills up behind the hung request and the rest is counted.
    let mut extra = 0;
    loop {
        let text = scrape(&http, &shipping).await;
        if value(&text, r#"lct_log_events_dropped_total{reason="buffer_full"}"#) > 0.0 {
            break;
        }
        extra += 1;
        assert!(extra < 2_000, "nothing was dropped:\n{text}");
        let _ = http.get(shipping.url("/liveness")).send().await.unwrap();
    }
    assert!(
        value(&scrape(&http, &shipping).await, r#"lct_log_events_shipped_total{destination="elasticsearch"}"#) >= 1.0
    );
}

/// The shipper's own warnings on stdout.
fn shipper_warnings(server: &Server) -> Vec<Value> {
    server
        .log_lines()
        .into_iter()
        .filter(|l| {
            l["log.level"] == "warn" && l["log.logger"].as_str().unwrap_or_default().starts_with("lct::telemetry")
        })
        .collect()
}

#[tokio::test]
async fn logs_are_shipped_when_elasticsearch_refuses_to_install_the_index_template() {
    // A user with write access to lct-api-* only, as k8s/README.md suggests, may not manage
    // index templates.
    let elasticsearch = StandIn::start().await;
    elasticsearch.answers.template_status.store(403, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_ELASTICSEARCH_URL", elasticsearch.url.as_str())]).await;
    let http = client();

    create(&http, &server, "Least privilege night", 4).await;
    eventually("a _bulk request", || (!elasticsearch.bulk_requests().is_empty()).then_some(())).await;
    let shipped = r#"lct_log_events_shipped_total{destination="elasticsearch"}"#;
    scrape_until(&http, &server, shipped, 1.0).await;

    // A later batch is shipped too, without asking for the template again or warning again.
    create(&http, &server, "Least privilege night 2", 4).await;
    eventually("a second _bulk request", || (elasticsearch.bulk_requests().len() >= 2).then_some(())).await;
    scrape_until(&http, &server, shipped, 2.0).await;
    assert_eq!(elasticsearch.template_requests().len(), 1, "a refused template is not asked for again");
    let warnings = shipper_warnings(&server);
    assert_eq!(warnings.len(), 1, "the refusal is reported once: {warnings:#?}");
    let text = scrape(&http, &server).await;
    for reason in ["buffer_full", "failed", "rejected"] {
        assert_eq!(value(&text, &format!("lct_log_events_dropped_total{{reason=\"{reason}\"}}")), 0.0, "{reason}");
    }
}

#[tokio::test]
async fn an_index_template_elasticsearch_could_not_install_is_installed_with_a_later_batch() {
    let elasticsearch = StandIn::start().await;
    elasticsearch.answers.template_status.store(503, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_ELASTICSEARCH_URL", elasticsearch.url.as_str())]).await;
    let http = client();

    create(&http, &server, "Template night", 4).await;
    eventually("a _bulk request", || (!elasticsearch.bulk_requests().is_empty()).then_some(())).await;
    elasticsearch.answers.template_status.store(200, Ordering::SeqCst);
    create(&http, &server, "Template night 2", 4).await;
    eventually("a second _bulk request", || (elasticsearch.bulk_requests().len() >= 2).then_some(())).await;

    let paths: Vec<String> = elasticsearch.received().into_iter().map(|r| r.path).collect();
    let template = "/_index_template/lct-api";
    assert_eq!(paths.iter().filter(|p| *p == template).count(), 2, "{paths:?}");
    let second_bulk = paths.iter().enumerate().filter(|(_, p)| *p == "/_bulk").nth(1).unwrap().0;
    assert_eq!(paths[second_bulk - 1], template, "the template again before the second batch: {paths:?}");
    assert_eq!(shipper_warnings(&server).len(), 1, "the failure is reported once");
    scrape_until(&http, &server, r#"lct_log_events_shipped_total{destination="elasticsearch"}"#, 2.0).await;
}

/// The `authorization` headers of a request, however many it has.
fn authorizations(request: &Received) -> Vec<&str> {
    request.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.as_str()).collect()
}

/// Runs lct shipping to `url` with `LCT_ELASTICSEARCH_API_KEY` set to `api_key`, makes it log a
/// request, and returns what Elasticsearch received once a `_bulk` request came.
async fn shipped_with(elasticsearch: &StandIn, url: &str, api_key: &str) -> Vec<Received> {
    let dir = tempfile::tempdir().unwrap();
    let env = [("LCT_ELASTICSEARCH_URL", url), ("LCT_ELASTICSEARCH_API_KEY", api_key)];
    let server = Server::start(dir.path(), &env).await;
    create(&client(), &server, "Credentials night", 4).await;
    eventually("a _bulk request", || (!elasticsearch.bulk_requests().is_empty()).then_some(())).await;
    let all = server.logs.lock().unwrap().join("\n");
    assert!(!all.contains("es-secret-93b"), "a secret reached the logs");
    elasticsearch.received()
}

#[tokio::test]
async fn the_api_key_is_the_one_authorization_even_when_the_url_has_credentials() {
    let elasticsearch = StandIn::start().await;
    let url = elasticsearch.url.replace("http://", "http://elastic:es-secret-93b@");
    let requests = shipped_with(&elasticsearch, &url, "a2V5LWlkOmtleQ==").await;
    for request in &requests {
        assert_eq!(authorizations(request), ["ApiKey a2V5LWlkOmtleQ=="], "{} {}", request.method, request.path);
    }
}

#[tokio::test]
async fn an_api_key_read_from_a_secret_file_loses_its_trailing_newline() {
    let elasticsearch = StandIn::start().await;
    let requests = shipped_with(&elasticsearch, &elasticsearch.url, "abc\n").await;
    for request in &requests {
        assert_eq!(authorizations(request), ["ApiKey abc"], "{} {}", request.method, request.path);
    }
}

#[tokio::test]
async fn an_empty_api_key_counts_as_unset() {
    for key in ["", " \n"] {
        let elasticsearch = StandIn::start().await;
        let requests = shipped_with(&elasticsearch, &elasticsearch.url, key).await;
        for request in &requests {
            assert_eq!(authorizations(request), Vec::<&str>::new(), "{key:?}: {} {}", request.method, request.path);
        }
        let elasticsearch = StandIn::start().await;
        let url = elasticsearch.url.replace("http://", "http://elastic:es-secret-93b@");
        let requests = shipped_with(&elasticsearch, &url, key).await;
        for request in &requests {
            let basic = ["Basic ZWxhc3RpYzplcy1zZWNyZXQtOTNi"];
            assert_eq!(authorizations(request), basic, "{key:?}: {} {}", request.method, request.path);
        }
    }
}

/// Runs lct with `env` expecting it to refuse to start; returns its exit status and stderr.
async fn refused_start(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lct"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LCT_LISTEN", "127.0.0.1:0")
        .env("LCT_DATA_DIR", dir.path())
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(PATIENCE, command.output()).await.expect("lct started and kept running").unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn a_key_or_token_that_cannot_be_a_header_stops_start_up_with_a_clear_error() {
    let stand_in = StandIn::start().await;
    for (url, secret) in
        [("LCT_ELASTICSEARCH_URL", "LCT_ELASTICSEARCH_API_KEY"), ("LCT_APM_SERVER_URL", "LCT_APM_SECRET_TOKEN")]
    {
        let (status, stderr) =
            refused_start(&[(url, stand_in.url.as_str()), (secret, "secret-4f1\nsecond line")]).await;
        assert!(!status.success(), "{secret}");
        assert!(stderr.contains(secret), "the error names {secret}: {stderr}");
        assert!(!stderr.contains("secret-4f1"), "the error shows the secret: {stderr}");
    }
}

// --- traces to Elastic APM ---------------------------------------------------------------------

#[tokio::test]
async fn traces_with_request_event_store_and_redis_spans_reach_apm_server() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let apm = StandIn::start().await;
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("LCT_APM_SERVER_URL", apm.url.as_str()),
        ("LCT_REDIS_URL", redis.url.as_str()),
        ("LCT_POD_NAME", "lct-test-pod-1"),
    ];
    let server = Server::start(dir.path(), &env).await;
    let http = client();
    let created = http
        .post(server.url("/api/Tournament/create"))
        .json(&serde_json::json!({"name": "Tracing night", "playerLimit": 4}))
        .send()
        .await
        .unwrap();
    let id = request_id(&created).await;
    let tid: String = created.json().await.unwrap();
    // From version 1 (the creation): the join is delivered whether it lands before or after the
    // subscription takes effect.
    let mut live = Live::connect(&server.base, &tid, Some(1)).await;
    assert_eq!(join(&http, &server.base, &tid, "Anna", "Nowak").await.status(), 200);
    live.next().await.expect("the join event");
    let line = eventually("the create line", || request_line(&server, &id)).await;
    drop(live);
    // Paths no route matches (a scanner's) do not name transactions: there would be one each.
    for n in 0..3 {
        let scan = http.get(server.url(&format!("/scan/{n}"))).send().await.unwrap();
        assert_eq!(scan.status(), 404);
    }
    // Stopping flushes the spans still queued.
    assert!(server.stop().await.success());

    let mut spans = Vec::new();
    let mut service_names = Vec::new();
    for request in apm.received().iter().filter(|r| r.path == "/v1/traces") {
        assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
        let export = ExportTraceServiceRequest::decode(request.body.as_slice()).expect("an OTLP protobuf export");
        for resource in export.resource_spans {
            for attribute in resource.resource.iter().flat_map(|r| r.attributes.iter()) {
                if attribute.key == "service.name" {
                    service_names.push(format!("{:?}", attribute.value));
                }
            }
            spans.extend(resource.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    assert!(!service_names.is_empty() && service_names.iter().all(|n| n.contains("\"lct\"")), "{service_names:?}");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(!names.iter().any(|name| name.contains("/scan")), "{names:?}");
    assert_eq!(names.iter().filter(|name| **name == "GET").count(), 3, "{names:?}");
    for expected in
        ["POST /api/tournament/create", "event_store.append", "event_store.load", "redis.publish", "redis.subscribe"]
    {
        assert!(names.contains(&expected), "no span {expected} among {names:?}");
    }

    // The create request is the transaction; its event-store spans are its children; its log line
    // names both.
    let request = spans
        .iter()
        .find(|s| {
            s.name == "POST /api/tournament/create" && hex(&s.trace_id) == line["trace.id"].as_str().unwrap_or_default()
        })
        .unwrap_or_else(|| panic!("no request span with the log line's trace.id: {line}"));
    assert!(request.parent_span_id.is_empty(), "the request span is a root");
    assert_eq!(line["transaction.id"], hex(&request.span_id).as_str());
    let append = spans
        .iter()
        .find(|s| s.name == "event_store.append" && s.trace_id == request.trace_id)
        .expect("the append inside the create request");
    assert_eq!(append.parent_span_id, request.span_id);
}

#[tokio::test]
async fn the_apm_secret_token_loses_the_newline_of_its_secret_file() {
    let apm = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [("LCT_APM_SERVER_URL", apm.url.as_str()), ("LCT_APM_SECRET_TOKEN", "apm-token-7\n")];
    let server = Server::start(dir.path(), &env).await;
    create(&client(), &server, "Token night", 4).await;
    // Stopping flushes the spans still queued.
    assert!(server.stop().await.success());
    let exports: Vec<Received> = apm.received().into_iter().filter(|r| r.path == "/v1/traces").collect();
    assert!(!exports.is_empty(), "no spans were exported");
    for export in &exports {
        assert_eq!(authorizations(export), ["Bearer apm-token-7"]);
    }
}

// --- metrics -----------------------------------------------------------------------------------

/// Scrapes until `series` reaches at least `at_least`.
async fn scrape_until(http: &reqwest::Client, server: &Server, series: &str, at_least: f64) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = scrape(http, server).await;
        if sample(&text, series).unwrap_or(0.0) >= at_least {
            return text;
        }
        assert!(Instant::now() < deadline, "{series} stayed below {at_least}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_count_the_traffic_that_happened() {
    let mut redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_REDIS_URL", redis.url.as_str())]).await;
    let http = client();

    // Warm-up: join players to warm-up tournaments until the pod's own events come back from
    // Redis (its publishing connection may come up a moment after it starts listening).
    let deadline = Instant::now() + PATIENCE;
    let mut warm_sockets = Vec::new();
    'warm: for round in 0.. {
        let warm_up = create(&http, &server, &format!("Warm-up night {round}"), 10).await;
        let mut socket = Live::connect(&server.base, &warm_up, Some(1)).await;
        for n in 0..10 {
            assert_eq!(join(&http, &server.base, &warm_up, &format!("Warm{n}"), "Up").await.status(), 200);
            socket.next().await.expect("a warm-up event");
            let text = scrape(&http, &server).await;
            if sample(&text, "lct_pubsub_lag_seconds_count").unwrap_or(0.0) >= 1.0 {
                warm_sockets.push(socket);
                break 'warm;
            }
            assert!(Instant::now() < deadline, "no event came back from Redis:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        warm_sockets.push(socket);
    }
    let before = scrape(&http, &server).await;
    let delta = |after: &str, series: &str| value(after, series) - sample(&before, series).unwrap_or(0.0);

    let tid = create(&http, &server, "Metrics night", 10).await;
    tournament(&http, &server.base, &tid).await;
    tournament(&http, &server.base, &tid).await;
    let mut live = Live::connect(&server.base, &tid, Some(1)).await;
    for name in ["Anna", "Bea", "Cleo"] {
        assert_eq!(join(&http, &server.base, &tid, name, "Nowak").await.status(), 200);
    }
    for _ in 0..3 {
        live.next().await.expect("a join event");
    }
    assert_eq!(http.get(server.url("/no/such/route")).send().await.unwrap().status(), 404);
    // The three joins come back from Redis asynchronously.
    let lag_before = value(&before, "lct_pubsub_lag_seconds_count");
    let text = scrape_until(&http, &server, "lct_pubsub_lag_seconds_count", lag_before + 3.0).await;

    let create_series = r#"{route="/api/tournament/create",method="POST",status="200"}"#;
    let get_series = r#"{route="/api/tournament",method="GET",status="200"}"#;
    let join_series = r#"{route="/api/tournament/assignplayer",method="POST",status="200"}"#;
    let missing_series = r#"{route="unmatched",method="GET",status="404"}"#;
    for (series, count) in [(create_series, 1.0), (get_series, 2.0), (join_series, 3.0), (missing_series, 1.0)] {
        assert_eq!(delta(&text, &format!("lct_http_requests_total{series}")), count, "{series}");
        assert_eq!(delta(&text, &format!("lct_http_request_duration_seconds_count{series}")), count, "{series}");
        let bucket = format!(r#"lct_http_request_duration_seconds_bucket{{le="+Inf",{}"#, &series[1..]);
        assert_eq!(delta(&text, &bucket), count, "{bucket}");
    }
    assert!(delta(&text, &format!("lct_http_request_duration_seconds_sum{create_series}")) > 0.0);
    let sockets = warm_sockets.len() as f64 + 1.0;
    assert_eq!(value(&text, "lct_ws_connections"), sockets, "the warm-up sockets and this one");
    assert_eq!(delta(&text, "lct_messages_delivered_total"), 3.0, "three joins to one connection");
    assert_eq!(value(&text, r#"lct_messages_dropped_total{reason="slow_consumer"}"#), 0.0);
    assert_eq!(delta(&text, r#"lct_messages_dropped_total{reason="bus_publish_failed"}"#), 0.0);
    assert_eq!(value(&text, "lct_slow_consumer_disconnects_total"), 0.0);
    assert_eq!(value(&text, r#"lct_messages_dropped_total{reason="bus_outbox_full"}"#), 0.0);
    for cause in ["bus_gap", "periodic_check", "resync", "overflow"] {
        assert_eq!(value(&text, &format!("lct_gaps_repaired_total{{cause=\"{cause}\"}}")), 0.0, "{cause}");
    }
    assert!(value(&text, "lct_event_store_versions_duration_seconds_count") >= 1.0, "the feed's first read");
    assert_eq!(value(&text, "lct_redis_connected"), 1.0);
    assert!(delta(&text, "lct_pubsub_lag_seconds_count") >= 3.0);
    assert!(delta(&text, r#"lct_pubsub_lag_seconds_bucket{le="+Inf"}"#) >= 3.0);
    assert_eq!(delta(&text, "lct_event_store_append_duration_seconds_count"), 4.0, "one create and three joins");
    assert!(delta(&text, "lct_event_store_load_duration_seconds_count") >= 6.0, "each command and query loads");
    assert_eq!(value(&text, "lct_version_conflicts_total"), 0.0);
    assert_eq!(value(&text, r#"lct_log_events_dropped_total{reason="buffer_full"}"#), 0.0);

    // Racing joins: every append is one of the eleven successes or a conflict that was retried.
    let contended = create(&http, &server, "Contended night", 10).await;
    let joins = (0..10).map(|n| {
        let (http, base, id) = (http.clone(), server.base.clone(), contended.clone());
        tokio::spawn(async move { join(&http, &base, &id, &format!("Player{n}"), "Racer").await.status() })
    });
    for status in futures::future::join_all(joins).await {
        assert_eq!(status.unwrap(), 200);
    }
    let text = scrape(&http, &server).await;
    let conflicts = value(&text, "lct_version_conflicts_total");
    assert_eq!(delta(&text, "lct_event_store_append_duration_seconds_count"), 4.0 + 11.0 + conflicts);

    drop((live, warm_sockets));
    redis.kill().await;
    let deadline = Instant::now() + PATIENCE;
    while value(&scrape(&http, &server).await, "lct_redis_connected") != 0.0 {
        assert!(Instant::now() < deadline, "lct_redis_connected stayed 1 after Redis died");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn methods_and_paths_a_client_makes_up_cannot_grow_the_metrics_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    for n in 0..40 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{n}").as_bytes()).unwrap();
        http.request(method, server.url("/liveness")).send().await.unwrap();
    }
    // One method of 16 000 bytes, and a path of 12 000 that no route matches (a head of up to
    // 32 KiB is read).
    let long_path = format!("/{}", "p".repeat(12_000));
    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    let request = format!("{} {long_path} HTTP/1.1\r\nHost: lct\r\nConnection: close\r\n\r\n", "A".repeat(16_000));
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer).await;
    let id = String::from_utf8_lossy(&answer)
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: ").map(str::to_owned))
        .expect("the made-up request is answered with its id");

    let text = scrape(&http, &server).await;
    assert!(!text.contains("MADEUP"), "a method a client made up became a series");
    assert!(!text.contains("AAAA"), "a method a client made up became a series");
    let series = text.lines().filter(|l| l.starts_with("lct_http_requests_total{")).count();
    assert!(series <= 4, "{series} request series:\n{text}");
    assert!(text.len() < 64 * 1024, "the exposition is {} bytes", text.len());
    // The log line names the request without repeating what the client made up.
    let line = eventually("the made-up request's line", || request_line(&server, &id)).await;
    let logged = line.to_string();
    assert!(logged.len() < 4096, "a log line of {} bytes", logged.len());
    assert_eq!(line["Method"], "_OTHER");
    assert!(line["url.path"].as_str().unwrap().starts_with("/ppp"));
}
