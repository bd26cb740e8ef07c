//! Where the key of the v2 tokens comes from: `LCT_TOKEN_SECRET` when set; else, with Redis,
//! the key the pods agree on through it (see `api::v2::tokens::agree`); else a random key kept
//! in the data directory, readable by its owner only and shared by the processes using that
//! directory.

use anyhow::Context;
use api::v2::tokens::{TokenKeys, MIN_KEY_BYTES};
use std::io::Write;
use std::path::Path;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "token.key";

/// What the examples' placeholder secrets contain (`.env.example`, `k8s/secret.example.yaml`).
const PLACEHOLDER: &str = "change-me";

/// Characters of a key file's key (32 random bytes in hex).
const KEY_CHARS: usize = 64;

/// The keys of `LCT_TOKEN_SECRET`, or `None` when it is unset or blank.
pub fn configured(secret: Option<&str>) -> anyhow::Result<Option<TokenKeys>> {
    let Some(secret) = secret.filter(|s| !s.trim().is_empty()) else { return Ok(None) };
    anyhow::ensure!(secret.len() >= MIN_KEY_BYTES, "LCT_TOKEN_SECRET must be at least {MIN_KEY_BYTES} characters");
    // The examples' placeholders are public: with one, anyone could forge every token.
    anyhow::ensure!(
        !secret.to_ascii_lowercase().contains(PLACEHOLDER),
        "LCT_TOKEN_SECRET is still the example's placeholder; set a random secret (e.g. `openssl rand -hex 32`)"
    );
    Ok(Some(TokenKeys::new(secret.as_bytes())))
}

/// The key kept in `data_dir`, created (mode 0600) by whichever process comes first. An existing
/// file that others may read is used as it is and reported at warn level.
///
/// The key is written and synced under a name of its own, then linked to its final name, which
/// fails when another process linked its key first: the file is never seen half written (a
/// crash while it is written leaves only a stray temporary file), and every process takes the
/// first key.
pub fn from_data_dir(data_dir: &Path) -> anyhow::Result<TokenKeys> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(KEY_FILE);
    if !path.exists() {
        create(data_dir, &path)?;
    } else {
        warn_if_others_can_read(&path);
    }
    let key = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        key.len() == KEY_CHARS && key.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{} is not a token key ({KEY_CHARS} lowercase hex digits); if no v2 token was issued with it \
         (an earlier release left it empty when it crashed while writing it), delete it and start again",
        path.display()
    );
    Ok(TokenKeys::new(&key))
}

/// Writes a new key to `path` unless another process has put one there first.
fn create(data_dir: &Path, path: &Path) -> anyhow::Result<()> {
    let temporary = data_dir.join(format!(".{KEY_FILE}.{}", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(hex(&rand_bytes()).as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| match std::fs::hard_link(&temporary, path) {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&temporary);
    linked.with_context(|| format!("creating {}", path.display()))?;
    // The new name is durable once the directory is synced.
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing {}", data_dir.display()))
}

#[cfg(unix)]
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                mode = format!("{mode:o}"),
                "the token key file {} can be read by other users, who could forge v2 tokens: chmod 600 it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_path: &Path) {}

fn rand_bytes() -> [u8; 32] {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(a.as_bytes());
    bytes[16..].copy_from_slice(b.as_bytes());
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = from_data_dir(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = from_data_dir(dir.path()).unwrap();
        let t = uuid::Uuid::new_v4();
        assert_eq!(second.is_organiser(t, &first.organiser(t).unwrap()), Ok(true));
    }

    #[test]
    fn a_damaged_key_file_is_refused_with_what_to_do_and_nothing_is_left_behind() {
        for damaged in ["", "0123", &"z".repeat(64), &format!("{}\n", "a".repeat(64)), &"A".repeat(64)] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(KEY_FILE), damaged).unwrap();
            let error = from_data_dir(dir.path()).err().unwrap_or_else(|| panic!("{damaged:?} accepted")).to_string();
            assert!(error.contains("not a token key") && error.contains("delete it"), "{error}");
        }
        // Creating a key leaves the key file alone in the directory.
        let dir = tempfile::tempdir().unwrap();
        from_data_dir(dir.path()).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [KEY_FILE]);
    }

    #[test]
    fn processes_starting_together_take_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<TokenKeys> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8).map(|_| scope.spawn(|| from_data_dir(dir.path()).unwrap())).collect();
            starts.into_iter().map(|start| start.join().unwrap()).collect()
        });
        let t = uuid::Uuid::new_v4();
        let token = keys[0].organiser(t).unwrap();
        assert!(keys.iter().all(|keys| keys.is_organiser(t, &token) == Ok(true)));
    }

    #[test]
    fn a_short_configured_secret_is_refused_and_a_blank_one_is_unset() {
        assert!(configured(Some("short")).is_err());
        assert!(configured(Some("  ")).unwrap().is_none());
        assert!(configured(Some("a secret of enough length")).unwrap().is_some());
        // The examples' placeholders are refused: they are published.
        for placeholder in ["change-me-token-secret-of-every-pod", "CHANGE-ME and then some more"] {
            let error = configured(Some(placeholder)).expect_err("a placeholder is refused").to_string();
            assert!(error.contains("placeholder"), "{error}");
        }
    }
}
