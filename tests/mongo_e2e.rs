//! The end-to-end tournament tests against the real binary with a MongoDB replica set. They
//! need `LCT_TEST_MONGODB_URI` and run with `--ignored`; without a replica set they are
//! reported as ignored, never as passed (and fail if forced to run without one).

mod common;

use common::*;
use futures::future::join_all;

const NEEDS_MONGODB: &str = "set LCT_TEST_MONGODB_URI to a replica set and run with --ignored";

fn mongo_env() -> Vec<(&'static str, String)> {
    let uri = std::env::var("LCT_TEST_MONGODB_URI").expect(NEEDS_MONGODB);
    vec![("LCT_MONGODB_URI", uri), ("LCT_MONGODB_DATABASE", format!("lct_e2e_{}", uuid::Uuid::new_v4().simple()))]
}

async fn start(dir: &std::path::Path, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(dir, &env).await
}

#[tokio::test]
#[ignore = "needs a MongoDB replica set: set LCT_TEST_MONGODB_URI and run with --ignored"]
async fn a_whole_tournament_night_on_mongodb() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &mongo_env()).await;
    let http = client();
    let id = create(&http, &server, "Mongo night", 2).await;
    assert_eq!(join(&http, &server.base, &id, "Anna", "Nowak").await.status(), 200);
    assert_eq!(join(&http, &server.base, &id, "Ben", "Kowal").await.status(), 200);
    assert_error(join(&http, &server.base, &id, "Cleo", "Lis").await, 409).await;
    assert_eq!(select(&http, &server.base, &id, "Anna", "Nowak", "PSG").await.status(), 200);
    assert_error(select(&http, &server.base, &id, "Ben", "Kowal", "PSG").await, 409).await;
    assert_eq!(select(&http, &server.base, &id, "Ben", "Kowal", "Chelsea").await.status(), 200);
    let url = server.url(&format!("/api/Tournament/draw?tournamentId={id}"));
    let first: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let again: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(first, again);
    assert_eq!(tournament(&http, &server.base, &id).await["version"], 6);
    let ready = http.get(server.url("/readiness")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
#[ignore = "needs a MongoDB replica set: set LCT_TEST_MONGODB_URI and run with --ignored"]
async fn two_pods_on_mongodb_keep_every_rule_under_concurrency() {
    let env = mongo_env();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(dir_a.path(), &env).await;
    let b = start(dir_b.path(), &env).await;
    let bases = [a.base.clone(), b.base.clone()];
    let http = client();
    let id = create(&http, &a, "Mongo crowd", 10).await;
    let joins = (0..20).map(|i| {
        let (http, base, id) = (http.clone(), bases[i % 2].clone(), id.clone());
        async move { join(&http, &base, &id, &format!("P{i}"), "S").await.status().as_u16() }
    });
    let statuses = join_all(joins).await;
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 10);
    assert_eq!(statuses.iter().filter(|&&s| s == 409).count(), 10);
    let name = format!("Mongo unique {}", uuid::Uuid::new_v4());
    let creates = (0..10).map(|i| {
        let (http, base, name) = (http.clone(), bases[i % 2].clone(), name.clone());
        async move {
            http.post(format!("{base}/api/Tournament/create"))
                .json(&serde_json::json!({"name": name, "playerLimit": 2}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = join_all(creates).await;
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
}
