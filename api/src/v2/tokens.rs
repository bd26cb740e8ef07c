//! Tokens of the v2 API: an organiser token per tournament and a token per player, both HMACs
//! under a key shared by all pods, so any pod can check them without shared state.
//!
//! The key is `LCT_TOKEN_SECRET` when configured. Otherwise pods sharing a Redis agree on one
//! through it ([`agree`]): the first pod's random proposal is kept there without expiry and every
//! later pod takes it. Until a pod holds the key, its token operations answer 503.

use hmac::{Hmac, Mac};
use live::ports::SharedSecrets;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of MAC kept in a token (128 bits).
const MAC_BYTES: usize = 16;

/// Shortest accepted key, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// The name of the token key among the shared secrets.
pub const SHARED_KEY_NAME: &str = "token-key";

/// How a hub connection token starts (tokens of earlier releases, kept in the shared store, are
/// bare hex).
pub const CONNECTION_PREFIX: &str = "c.";

/// A connection token's tournament part when it binds none.
const ANY_TOURNAMENT: &str = "any";

/// What a valid hub connection token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionGrant {
    /// The tournament it may connect to; `None` for any.
    pub tournament: Option<Uuid>,
    /// Seconds since the Unix epoch after which it is no longer valid.
    pub expires: u64,
}

/// Issues and checks tokens; cheap to clone (clones share the key).
#[derive(Clone)]
pub struct TokenKeys {
    key: Arc<OnceLock<Vec<u8>>>,
}

/// This pod does not hold the token key yet (it is still being agreed with the other pods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token key is not agreed yet")]
pub struct KeyPending;

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

/// `bytes` in lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
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
    /// Keys from a secret of at least [`MIN_KEY_BYTES`] bytes.
    pub fn new(secret: &[u8]) -> Self {
        let keys = Self::pending();
        keys.set(secret);
        keys
    }

    /// Keys whose key comes later, through [`TokenKeys::set`].
    pub fn pending() -> Self {
        Self { key: Arc::new(OnceLock::new()) }
    }

    /// Sets the key once; `false` when it was set already (the first key stays).
    pub fn set(&self, secret: &[u8]) -> bool {
        self.key.set(secret.to_vec()).is_ok()
    }

    /// Whether the key is there.
    pub fn is_ready(&self) -> bool {
        self.key.get().is_some()
    }

    fn key(&self) -> Result<&[u8], KeyPending> {
        self.key.get().map(Vec::as_slice).ok_or(KeyPending)
    }

    fn mac(&self, message: &str) -> Result<HmacSha256, KeyPending> {
        let key = self.key()?;
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(message.as_bytes());
        Ok(mac)
    }

    fn sign(&self, message: &str) -> Result<String, KeyPending> {
        Ok(hex(&self.mac(message)?.finalize().into_bytes()[..MAC_BYTES]))
    }

    /// Whether `signature` is the whole MAC of `message`, of exactly the issued length, compared
    /// in constant time. (`verify_truncated_left` alone would accept any prefix of the MAC.)
    fn verify(&self, message: &str, signature: &str) -> Result<bool, KeyPending> {
        let mac = self.mac(message)?;
        Ok(unhex_mac(signature).is_some_and(|expected| mac.verify_truncated_left(&expected).is_ok()))
    }

    /// The organiser token of a tournament.
    pub fn organiser(&self, tournament: Uuid) -> Result<String, KeyPending> {
        Ok(format!("o.{}", self.sign(&format!("organiser|{tournament}"))?))
    }

    pub fn is_organiser(&self, tournament: Uuid, token: &str) -> Result<bool, KeyPending> {
        self.key()?;
        match token.strip_prefix("o.") {
            Some(signature) => self.verify(&format!("organiser|{tournament}"), signature),
            None => Ok(false),
        }
    }

    /// The token of one player of a tournament.
    pub fn player(&self, tournament: Uuid, player: Uuid) -> Result<String, KeyPending> {
        Ok(format!("p.{}.{}", player.simple(), self.sign(&format!("player|{tournament}|{player}"))?))
    }

    /// A hub connection token (what SignalR's negotiation hands out), valid until `expires`
    /// (seconds since the Unix epoch) for a connection to `tournament`, or to any tournament
    /// when `None`. Any pod can check it without shared state.
    pub fn connection(&self, tournament: Option<Uuid>, expires: u64) -> Result<String, KeyPending> {
        let bound = tournament.map_or_else(|| ANY_TOURNAMENT.to_owned(), |t| t.simple().to_string());
        let body = format!("{expires}.{bound}.{}", hex(&rand::random::<[u8; 8]>()));
        Ok(format!("{CONNECTION_PREFIX}{body}.{}", self.sign(&format!("connection|{body}"))?))
    }

    /// What a connection token grants, when it is one this key signed (expired or not).
    /// `Ok(None)` for anything else, including tokens of another shape.
    pub fn connection_grant(&self, token: &str) -> Result<Option<ConnectionGrant>, KeyPending> {
        self.key()?;
        let Some((body, signature)) = token.strip_prefix(CONNECTION_PREFIX).and_then(|rest| rest.rsplit_once('.'))
        else {
            return Ok(None);
        };
        if !self.verify(&format!("connection|{body}"), signature)? {
            return Ok(None);
        }
        let mut parts = body.split('.');
        let expires = parts.next().and_then(|expires| expires.parse().ok());
        let tournament = match parts.next() {
            Some(ANY_TOURNAMENT) => Some(None),
            Some(bound) => Uuid::try_parse(bound).ok().map(Some),
            None => None,
        };
        Ok(expires.zip(tournament).map(|(expires, tournament)| ConnectionGrant { tournament, expires }))
    }

    /// The player a token belongs to, when it is a valid player token of this tournament.
    pub fn player_of(&self, tournament: Uuid, token: &str) -> Result<Option<Uuid>, KeyPending> {
        self.key()?;
        let Some((player, signature)) = token.strip_prefix("p.").and_then(|rest| rest.split_once('.')) else {
            return Ok(None);
        };
        // The id as issued, 32 lowercase hex digits: a token is valid only as issued.
        let Some(player) = Uuid::try_parse(player).ok().filter(|id| id.simple().to_string() == player) else {
            return Ok(None);
        };
        Ok(self.verify(&format!("player|{tournament}|{player}"), signature)?.then_some(player))
    }
}

/// How often a pod that holds the agreed key checks that the shared store still holds it.
pub const RECHECK: Duration = Duration::from_secs(10);
/// How often a pod retries while the shared store cannot be reached.
pub const RETRY: Duration = Duration::from_secs(1);

/// Agrees on the token key with the other pods through `secrets` and sets it in `keys`:
/// retries every [`RETRY`] while the store is unreachable, then checks every [`RECHECK`] that
/// the store still holds it, putting it back when the store lost it (a Redis restarted without
/// persistence), so that a pod started later takes the same key. Returns when `cancel` fires.
pub async fn agree(keys: TokenKeys, secrets: Arc<dyn SharedSecrets>, cancel: CancellationToken) {
    let proposal = hex(&rand::random::<[u8; 32]>());
    let mut held: Option<String> = None;
    let mut reported_disagreement = false;
    loop {
        match secrets.agree(SHARED_KEY_NAME, held.as_deref().unwrap_or(&proposal)).await {
            Ok(agreed) if held.is_none() => {
                if agreed.len() < MIN_KEY_BYTES {
                    tracing::error!("the shared token key in the shared store is too short; set LCT_TOKEN_SECRET");
                } else {
                    keys.set(agreed.as_bytes());
                    tracing::info!("v2 token key agreed with the other pods through the shared store");
                    held = Some(agreed);
                }
            }
            Ok(agreed) if Some(&agreed) != held.as_ref() => {
                if !reported_disagreement {
                    tracing::error!(
                        "the shared store holds another token key than this pod (it lost its data while \
                         a new pod started): tokens of one pod fail on the other; set LCT_TOKEN_SECRET"
                    );
                    reported_disagreement = true;
                }
            }
            Ok(_) => reported_disagreement = false,
            Err(error) if held.is_none() => {
                tracing::warn!(%error, "cannot agree on the token key yet; v2 token operations answer 503 until then")
            }
            Err(error) => tracing::debug!(%error, "cannot check the shared token key"),
        }
        let pause = if held.is_some() { RECHECK } else { RETRY };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_tournament_and_player() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
        let organiser = keys.organiser(t1).unwrap();
        assert_eq!(keys.is_organiser(t1, &organiser), Ok(true));
        assert_eq!(keys.is_organiser(t2, &organiser), Ok(false));
        let anna = player_id(t1, "Anna", "Nowak");
        let token = keys.player(t1, anna).unwrap();
        assert_eq!(keys.player_of(t1, &token), Ok(Some(anna)));
        assert_eq!(keys.player_of(t2, &token), Ok(None));
        assert_eq!(keys.is_organiser(t1, &token), Ok(false));
        assert_eq!(keys.player_of(t1, &organiser), Ok(None));
        let mac = token.rsplit('.').next().unwrap();
        let forged = format!("p.{}.{mac}", player_id(t1, "Ben", "Kowal").simple());
        assert_eq!(keys.player_of(t1, &forged), Ok(None));
        // Anna's id written otherwise than issued.
        let upper = anna.simple().to_string().to_uppercase();
        for other_spelling in [anna.hyphenated().to_string(), upper, anna.braced().to_string(), anna.urn().to_string()]
        {
            assert_eq!(keys.player_of(t1, &format!("p.{other_spelling}.{mac}")), Ok(None), "{other_spelling}");
        }
        let other_keys = TokenKeys::new(b"another secret of sufficient len");
        assert_eq!(other_keys.is_organiser(t1, &organiser), Ok(false));
    }

    #[test]
    fn connection_tokens_carry_their_tournament_and_expiry_under_the_key() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let t = Uuid::new_v4();
        let bound = keys.connection(Some(t), 1_000).unwrap();
        assert_eq!(keys.connection_grant(&bound), Ok(Some(ConnectionGrant { tournament: Some(t), expires: 1_000 })));
        let any = keys.connection(None, 2_000).unwrap();
        assert_eq!(keys.connection_grant(&any), Ok(Some(ConnectionGrant { tournament: None, expires: 2_000 })));
        assert_ne!(keys.connection(None, 2_000).unwrap(), any, "each token is new");

        // Changing what it grants, or its MAC, leaves nothing valid.
        let (body, mac) = bound.rsplit_once('.').unwrap();
        let later = bound.replacen("1000", "9999", 1);
        let other = bound.replace(&t.simple().to_string(), &Uuid::new_v4().simple().to_string());
        let any_instead = bound.replace(&t.simple().to_string(), "any");
        for forged in
            [later, other, any_instead, body.to_owned(), format!("{body}.{}", &mac[..30]), format!("{body}.{mac}0")]
        {
            assert_eq!(keys.connection_grant(&forged), Ok(None), "{forged}");
        }
        // Other tokens of this key are not connection tokens, and another key's are not valid.
        assert_eq!(keys.connection_grant(&keys.organiser(t).unwrap()), Ok(None));
        assert_eq!(keys.connection_grant(&format!("c.{}", keys.organiser(t).unwrap())), Ok(None));
        assert_eq!(TokenKeys::new(b"another secret of sufficient len").connection_grant(&bound), Ok(None));
        assert_eq!(TokenKeys::pending().connection_grant(&bound), Err(KeyPending));
    }

    #[test]
    fn only_the_whole_mac_in_lowercase_hex_verifies() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let t = Uuid::new_v4();
        let token = keys.organiser(t).unwrap();
        let mac = token.strip_prefix("o.").unwrap();
        assert_eq!(mac.len(), 2 * MAC_BYTES);
        assert_eq!(keys.is_organiser(t, &token), Ok(true));
        for forged in [
            String::new(),
            mac[..2].to_owned(),
            mac[..MAC_BYTES].to_owned(),
            mac[..mac.len() - 2].to_owned(),
            format!("{mac}00"),
            mac.to_uppercase(),
        ] {
            assert_eq!(keys.is_organiser(t, &format!("o.{forged}")), Ok(false), "accepted o.{forged}");
        }
        // No two-digit prefix passes: the enumeration an attacker would try.
        assert!((0..=255u8).all(|b| keys.is_organiser(t, &format!("o.{b:02x}")) == Ok(false)));
    }

    #[test]
    fn without_a_key_nothing_is_issued_or_accepted() {
        let keys = TokenKeys::pending();
        let t = Uuid::new_v4();
        assert_eq!(keys.organiser(t), Err(KeyPending));
        assert_eq!(keys.is_organiser(t, "o.00"), Err(KeyPending));
        assert_eq!(keys.is_organiser(t, "anything"), Err(KeyPending));
        assert_eq!(keys.player_of(t, "p.x.y"), Err(KeyPending));
        assert!(keys.set(b"0123456789abcdef"));
        assert!(!keys.set(b"another key, ignored"), "the first key stays");
        let token = keys.organiser(t).unwrap();
        assert_eq!(TokenKeys::new(b"0123456789abcdef").is_organiser(t, &token), Ok(true));
    }

    /// A shared store that is unreachable for its first `down` calls and can lose its data.
    #[derive(Default)]
    struct FlakyStore {
        down: std::sync::atomic::AtomicUsize,
        stored: std::sync::Mutex<Option<String>>,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SharedSecrets for FlakyStore {
        async fn agree(&self, name: &str, proposal: &str) -> Result<String, live::ports::LiveError> {
            use std::sync::atomic::Ordering::SeqCst;
            assert_eq!(name, SHARED_KEY_NAME);
            self.calls.fetch_add(1, SeqCst);
            if self.down.load(SeqCst) > 0 {
                self.down.fetch_sub(1, SeqCst);
                return Err(live::ports::LiveError("down".into()));
            }
            Ok(self.stored.lock().unwrap().get_or_insert_with(|| proposal.to_owned()).clone())
        }
    }

    async fn until(what: impl Fn() -> bool) {
        while !what() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pods_take_the_key_the_store_holds_and_put_it_back_when_it_is_lost() {
        use std::sync::atomic::Ordering::SeqCst;
        let store = Arc::new(FlakyStore::default());
        store.down.store(3, SeqCst);
        let (first, second) = (TokenKeys::pending(), TokenKeys::pending());
        let cancel = CancellationToken::new();
        let first_task = tokio::spawn(agree(first.clone(), store.clone(), cancel.clone()));
        // Unreachable at first: retried until the store answers.
        until(|| first.is_ready()).await;
        assert!(store.calls.load(SeqCst) >= 4);
        let second_task = tokio::spawn(agree(second.clone(), store.clone(), cancel.clone()));
        until(|| second.is_ready()).await;
        let t = Uuid::new_v4();
        assert_eq!(second.is_organiser(t, &first.organiser(t).unwrap()), Ok(true), "one key for both");
        // The store loses its data: the holders put the key back, so a newcomer agrees with them.
        let held = store.stored.lock().unwrap().take().unwrap();
        until(|| store.stored.lock().unwrap().is_some()).await;
        assert_eq!(store.stored.lock().unwrap().as_deref(), Some(held.as_str()));
        let newcomer = TokenKeys::pending();
        tokio::spawn(agree(newcomer.clone(), store.clone(), cancel.clone()));
        until(|| newcomer.is_ready()).await;
        assert_eq!(newcomer.is_organiser(t, &first.organiser(t).unwrap()), Ok(true));
        cancel.cancel();
        first_task.await.unwrap();
        second_task.await.unwrap();
    }

    #[test]
    fn player_ids_are_stable_and_distinct() {
        let t = Uuid::new_v4();
        assert_eq!(player_id(t, "Anna", "Nowak"), player_id(t, "Anna", "Nowak"));
        assert_ne!(player_id(t, "Anna", "Nowak"), player_id(t, "AnnaN", "owak"));
    }
}
