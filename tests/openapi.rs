//! The OpenAPI document against the real server: every operation it lists is served. (That
//! the server answers as documented is checked by schemathesis, `scripts/schemathesis.sh`.)

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let document: Value = json_of(http.get(server.url("/swagger/v1/swagger.json"))).await;
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{:?}", paths.keys());
    for (path, item) in paths {
        let url = server.url(&path.replace("{id}", &uuid::Uuid::new_v4().to_string()));
        for method in item.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let response = http.request(method.clone(), &url).send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert!(!(status == 404 && body.contains("No such route")), "{method} {path} is not routed");
        }
    }
}
