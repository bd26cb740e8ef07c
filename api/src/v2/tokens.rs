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

/// The MAC of a token: exactly `MAC_BYTES` bytes written as lowercase hex, as issued. Anything
/// else (shorter, longer, upper case) is not a MAC at all.
fn unhex_mac(text: &str) -> Option<[u8; MAC_BYTES]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * MAC_BYTES {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut mac = [0u8; MAC_BYTES];
    for (byte, pair) in mac.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(mac)
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

    /// Whether `signature` is the whole MAC of `message`, of exactly the issued length, compared
    /// in constant time. (`verify_truncated_left` alone would accept any prefix of the MAC.)
    fn verify(&self, message: &str, signature: &str) -> bool {
        unhex_mac(signature).is_some_and(|mac| self.mac(message).verify_truncated_left(&mac).is_ok())
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
    fn only_the_whole_mac_in_lowercase_hex_verifies() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let t = Uuid::new_v4();
        let token = keys.organiser(t);
        let mac = token.strip_prefix("o.").unwrap();
        assert_eq!(mac.len(), 2 * MAC_BYTES);
        assert!(keys.is_organiser(t, &token));
        for forged in [
            String::new(),
            mac[..2].to_owned(),
            mac[..MAC_BYTES].to_owned(),
            mac[..mac.len() - 2].to_owned(),
            format!("{mac}00"),
            mac.to_uppercase(),
        ] {
            assert!(!keys.is_organiser(t, &format!("o.{forged}")), "accepted o.{forged}");
        }
        // No two-digit prefix passes: the enumeration an attacker would try.
        assert!((0..=255u8).all(|b| !keys.is_organiser(t, &format!("o.{b:02x}"))));
    }

    #[test]
    fn player_ids_are_stable_and_distinct() {
        let t = Uuid::new_v4();
        assert_eq!(player_id(t, "Anna", "Nowak"), player_id(t, "Anna", "Nowak"));
        assert_ne!(player_id(t, "Anna", "Nowak"), player_id(t, "AnnaN", "owak"));
    }
}
