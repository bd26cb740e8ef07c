//! Given events, when a command, then events or the broken rule.

use super::*;
use std::collections::HashSet;

fn tn(s: &str) -> TournamentName {
    TournamentName::parse(s).unwrap()
}
fn pn(s: &str) -> PlayerName {
    PlayerName::parse(s).unwrap()
}
fn ps(s: &str) -> PlayerSurname {
    PlayerSurname::parse(s).unwrap()
}
fn limit(n: i64) -> PlayerLimit {
    PlayerLimit::new(n).unwrap()
}

fn created(n: i64) -> TournamentEvent {
    TournamentEvent::TournamentCreated { name: tn("Friday"), player_limit: limit(n) }
}
fn joined(name: &str, surname: &str) -> TournamentEvent {
    TournamentEvent::PlayerJoined { name: pn(name), surname: ps(surname) }
}
fn selected(name: &str, surname: &str, team: Team) -> TournamentEvent {
    TournamentEvent::TeamSelected { name: pn(name), surname: ps(surname), team }
}
fn join(name: &str, surname: &str) -> Command {
    Command::JoinTournament { name: pn(name), surname: ps(surname) }
}
fn select(name: &str, surname: &str, team: Team) -> Command {
    Command::SelectTeam { name: pn(name), surname: ps(surname), team }
}

fn given(events: &[TournamentEvent]) -> TournamentState {
    TournamentState::default().replay(events)
}

fn full_and_selected() -> Vec<TournamentEvent> {
    vec![
        created(3),
        joined("Anna", "Nowak"),
        joined("Ben", "Kowal"),
        joined("Cleo", "Lis"),
        selected("Anna", "Nowak", Team::Bayern),
        selected("Ben", "Kowal", Team::Psg),
        selected("Cleo", "Lis", Team::Chelsea),
    ]
}

#[test]
fn create_on_an_empty_stream_emits_tournament_created() {
    let events = given(&[]).decide(Command::CreateTournament { name: tn("Friday"), player_limit: limit(4) }).unwrap();
    assert_eq!(events, vec![TournamentEvent::TournamentCreated { name: tn("Friday"), player_limit: limit(4) }]);
}

#[test]
fn create_twice_is_refused_as_tournament_already_exists() {
    let result = given(&[created(4)]).decide(Command::CreateTournament { name: tn("Other"), player_limit: limit(4) });
    assert_eq!(result, Err(DomainError::TournamentAlreadyExists));
}

#[test]
fn commands_on_a_missing_tournament_are_refused_as_not_found() {
    assert_eq!(given(&[]).decide(join("Anna", "Nowak")), Err(DomainError::TournamentNotFound));
    assert_eq!(given(&[]).decide(Command::DrawTeams { seed: 1 }), Err(DomainError::TournamentNotFound));
}

#[test]
fn rename_to_a_new_name_emits_tournament_renamed() {
    let events = given(&[created(4)]).decide(Command::RenameTournament { name: tn("Saturday") }).unwrap();
    assert_eq!(events, vec![TournamentEvent::TournamentRenamed { name: tn("Saturday") }]);
    let state = given(&[created(4)]).replay(&events);
    assert_eq!(state.tournament.unwrap().name, tn("Saturday"));
}

#[test]
fn rename_to_the_current_name_is_refused_as_name_unchanged() {
    let result = given(&[created(4)]).decide(Command::RenameTournament { name: tn("Friday") });
    assert_eq!(result, Err(DomainError::NameUnchanged));
}

#[test]
fn join_with_a_free_seat_emits_player_joined() {
    let events = given(&[created(2)]).decide(join("Anna", "Nowak")).unwrap();
    assert_eq!(events, vec![joined("Anna", "Nowak")]);
}

#[test]
fn join_twice_with_the_same_name_and_surname_is_refused_as_player_already_joined() {
    let result = given(&[created(4), joined("Anna", "Nowak")]).decide(join("Anna", "Nowak"));
    assert_eq!(result, Err(DomainError::PlayerAlreadyJoined));
}

#[test]
fn player_comparison_is_case_sensitive() {
    let result = given(&[created(4), joined("Anna", "Nowak")]).decide(join("anna", "Nowak"));
    assert!(result.is_ok());
}

#[test]
fn join_a_full_tournament_is_refused_as_tournament_full() {
    let result = given(&[created(2), joined("Anna", "Nowak"), joined("Ben", "Kowal")]).decide(join("Cleo", "Lis"));
    assert_eq!(result, Err(DomainError::TournamentFull));
}

#[test]
fn select_a_free_team_emits_team_selected() {
    let events = given(&[created(2), joined("Anna", "Nowak")]).decide(select("Anna", "Nowak", Team::Juventus)).unwrap();
    assert_eq!(events, vec![selected("Anna", "Nowak", Team::Juventus)]);
}

#[test]
fn select_by_a_stranger_is_refused_as_player_not_in_tournament() {
    let result = given(&[created(2), joined("Anna", "Nowak")]).decide(select("Ben", "Kowal", Team::Psg));
    assert_eq!(result, Err(DomainError::PlayerNotInTournament));
}

#[test]
fn a_second_selection_is_refused_as_player_already_selected() {
    let result = given(&[created(2), joined("Anna", "Nowak"), selected("Anna", "Nowak", Team::Psg)]).decide(select(
        "Anna",
        "Nowak",
        Team::Bayern,
    ));
    assert_eq!(result, Err(DomainError::PlayerAlreadySelected));
}

#[test]
fn a_team_held_by_another_player_is_refused_as_team_already_selected() {
    let result =
        given(&[created(2), joined("Anna", "Nowak"), joined("Ben", "Kowal"), selected("Anna", "Nowak", Team::Psg)])
            .decide(select("Ben", "Kowal", Team::Psg));
    assert_eq!(result, Err(DomainError::TeamAlreadySelected));
}

#[test]
fn draw_before_every_seat_is_taken_is_refused_as_not_all_seats_taken() {
    let result = given(&[created(3), joined("Anna", "Nowak"), selected("Anna", "Nowak", Team::Psg)])
        .decide(Command::DrawTeams { seed: 7 });
    assert_eq!(result, Err(DomainError::NotAllSeatsTaken));
}

#[test]
fn draw_before_every_player_selected_is_refused_as_not_all_players_selected() {
    let result =
        given(&[created(2), joined("Anna", "Nowak"), joined("Ben", "Kowal"), selected("Anna", "Nowak", Team::Psg)])
            .decide(Command::DrawTeams { seed: 7 });
    assert_eq!(result, Err(DomainError::NotAllPlayersSelected));
}

#[test]
fn draw_assigns_the_selected_teams_as_a_bijection() {
    let events = given(&full_and_selected()).decide(Command::DrawTeams { seed: 42 }).unwrap();
    let [TournamentEvent::TeamsDrawn { assignments }] = events.as_slice() else {
        panic!("expected one TeamsDrawn, got {events:?}");
    };
    let players: Vec<_> = assignments.iter().map(|a| (a.name.as_str(), a.surname.as_str())).collect();
    assert_eq!(players, [("Anna", "Nowak"), ("Ben", "Kowal"), ("Cleo", "Lis")]);
    let teams: HashSet<_> = assignments.iter().map(|a| a.team).collect();
    assert_eq!(teams, HashSet::from([Team::Bayern, Team::Psg, Team::Chelsea]));
}

#[test]
fn draw_is_deterministic_for_a_seed_and_covers_every_permutation() {
    let state = given(&full_and_selected());
    let draw = |seed| state.decide(Command::DrawTeams { seed }).unwrap();
    assert_eq!(draw(9), draw(9));
    let mut seen = std::collections::HashMap::new();
    for seed in 0..6000u64 {
        let events = draw(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let TournamentEvent::TeamsDrawn { assignments } = &events[0] else { unreachable!() };
        let key: Vec<Team> = assignments.iter().map(|a| a.team).collect();
        *seen.entry(key).or_insert(0u32) += 1;
    }
    // 3! permutations, each about 1000 times.
    assert_eq!(seen.len(), 6);
    assert!(seen.values().all(|&n| (800..1200).contains(&n)), "{seen:?}");
}

#[test]
fn drawing_again_appends_nothing_and_keeps_the_result() {
    let mut events = full_and_selected();
    let drawn = given(&events).decide(Command::DrawTeams { seed: 1 }).unwrap();
    events.extend(drawn.clone());
    let state = given(&events);
    assert_eq!(state.decide(Command::DrawTeams { seed: 2 }), Ok(vec![]));
    let TournamentEvent::TeamsDrawn { assignments } = &drawn[0] else { unreachable!() };
    assert_eq!(state.tournament.as_ref().unwrap().draw.as_ref(), Some(assignments));
    assert!(state.tournament.unwrap().players.iter().all(|p| p.drawn_team.is_some()));
}

#[test]
fn replay_counts_versions_from_one() {
    assert_eq!(given(&[]).version, 0);
    assert_eq!(given(&full_and_selected()).version, 7);
}
