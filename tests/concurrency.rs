//! Rules hold under concurrent requests, on one process and on two processes sharing one data
//! directory.

mod common;

use common::*;
use futures::future::join_all;

async fn count(responses: Vec<reqwest::Response>) -> (usize, usize) {
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    let conflicts = responses.iter().filter(|r| r.status() == 409).count();
    assert_eq!(
        ok + conflicts,
        responses.len(),
        "only 200s and 409s: {:?}",
        responses.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    (ok, conflicts)
}

async fn twenty_joins_to_ten_seats(bases: &[String], first: &Server) {
    let http = client();
    let id = create(&http, first, &format!("Crowd {}", uuid::Uuid::new_v4()), 10).await;
    let joins = (0..20).map(|i| {
        let http = http.clone();
        let base = bases[i % bases.len()].clone();
        let id = id.clone();
        async move { join(&http, &base, &id, &format!("Player{i}"), "Same").await }
    });
    let (ok, conflicts) = count(join_all(joins).await).await;
    assert_eq!((ok, conflicts), (10, 10));
    for base in bases {
        let state = tournament(&http, base, &id).await;
        assert_eq!(state["players"].as_array().unwrap().len(), 10);
        assert_eq!(state["version"], 11);
    }
}

async fn ten_players_pick_the_same_team(bases: &[String], first: &Server) {
    let http = client();
    let id = create(&http, first, &format!("Rush {}", uuid::Uuid::new_v4()), 10).await;
    for i in 0..10 {
        assert_eq!(join(&http, &bases[i % bases.len()], &id, &format!("P{i}"), "S").await.status(), 200);
    }
    let picks = (0..10).map(|i| {
        let http = http.clone();
        let base = bases[i % bases.len()].clone();
        let id = id.clone();
        async move { select(&http, &base, &id, &format!("P{i}"), "S", "Real Madrid").await }
    });
    let (ok, conflicts) = count(join_all(picks).await).await;
    assert_eq!((ok, conflicts), (1, 9));
    let state = tournament(&http, &bases[0], &id).await;
    let holders = state["players"].as_array().unwrap().iter().filter(|p| p["selectedTeam"] == "Real Madrid").count();
    assert_eq!(holders, 1);
}

#[tokio::test]
async fn twenty_simultaneous_joins_fill_ten_seats_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    twenty_joins_to_ten_seats(std::slice::from_ref(&server.base), &server).await;
}

#[tokio::test]
async fn ten_players_racing_for_one_team_give_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    ten_players_pick_the_same_team(std::slice::from_ref(&server.base), &server).await;
}

#[tokio::test]
async fn two_processes_sharing_a_data_directory_keep_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(dir.path(), &[]).await;
    let b = Server::start(dir.path(), &[]).await;
    let bases = [a.base.clone(), b.base.clone()];
    twenty_joins_to_ten_seats(&bases, &a).await;
    ten_players_pick_the_same_team(&bases, &a).await;

    // One name, claimed on both processes at once: one winner.
    let http = client();
    let name = format!("Unique {}", uuid::Uuid::new_v4());
    let creates = (0..10).map(|i| {
        let http = http.clone();
        let url = format!("{}/api/Tournament/create", bases[i % 2]);
        let name = name.clone();
        async move { http.post(url).json(&serde_json::json!({"name": name, "playerLimit": 2})).send().await.unwrap() }
    });
    assert_eq!(count(join_all(creates).await).await, (1, 9));
}
