//! Tokens of the v2 API: an organiser token per tournament and a token per player, both HMACs
//! under a key shared by all pods, so any pod can check them without shared state.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of MAC kept in a token (128 bits).
const MAC_BYTES: usize = 16;

/// Issues and checks tokens.
#[derive(Clone)]
pub struct TokenKeys {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// The stable id of a player: derived from the tournament and the (name, surname) pair.
pub fn player_id(tournament: Uuid, name: &str, surname: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(tournament.as_bytes())
        .chain_update(name.as_bytes())
        .chain_update([0x1f])
        .chain_update(surname.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

impl TokenKeys {
    /// Keys from a secret of at least 16 bytes.
    pub fn new(secret: &[u8]) -> Self {
        Self { key: secret.to_vec() }
    }

    fn mac(&self, message: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(message.as_bytes());
        mac
    }

    fn sign(&self, message: &str) -> String {
        hex(&self.mac(message).finalize().into_bytes()[..MAC_BYTES])
    }

    fn verify(&self, message: &str, signature: &str) -> bool {
        unhex(signature).is_some_and(|bytes| self.mac(message).verify_truncated_left(&bytes).is_ok())
    }

    /// The organiser token of a tournament.
    pub fn organiser(&self, tournament: Uuid) -> String {
        format!("o.{}", self.sign(&format!("organiser|{tournament}")))
    }

    pub fn is_organiser(&self, tournament: Uuid, token: &str) -> bool {
        token.strip_prefix("o.").is_some_and(|sig| self.verify(&format!("organiser|{tournament}"), sig))
    }

    /// The token of one player of a tournament.
    pub fn player(&self, tournament: Uuid, player: Uuid) -> String {
        format!("p.{}.{}", player.simple(), self.sign(&format!("player|{tournament}|{player}")))
    }

    /// The player a token belongs to, when it is a valid player token of this tournament.
    pub fn player_of(&self, tournament: Uuid, token: &str) -> Option<Uuid> {
        let (player, sig) = token.strip_prefix("p.")?.split_once('.')?;
        let player = Uuid::parse_str(player).ok()?;
        self.verify(&format!("player|{tournament}|{player}"), sig).then_some(player)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_tournament_and_player() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
        let organiser = keys.organiser(t1);
        assert!(keys.is_organiser(t1, &organiser));
        assert!(!keys.is_organiser(t2, &organiser));
        let anna = player_id(t1, "Anna", "Nowak");
        let token = keys.player(t1, anna);
        assert_eq!(keys.player_of(t1, &token), Some(anna));
        assert_eq!(keys.player_of(t2, &token), None);
        assert!(!keys.is_organiser(t1, &token));
        assert_eq!(keys.player_of(t1, &organiser), None);
        let forged = format!("p.{}.{}", player_id(t1, "Ben", "Kowal").simple(), token.rsplit('.').next().unwrap());
        assert_eq!(keys.player_of(t1, &forged), None);
        let other_keys = TokenKeys::new(b"another secret of sufficient len");
        assert!(!other_keys.is_organiser(t1, &organiser));
    }

    #[test]
    fn player_ids_are_stable_and_distinct() {
        let t = Uuid::new_v4();
        assert_eq!(player_id(t, "Anna", "Nowak"), player_id(t, "Anna", "Nowak"));
        assert_ne!(player_id(t, "Anna", "Nowak"), player_id(t, "AnnaN", "owak"));
    }
}
