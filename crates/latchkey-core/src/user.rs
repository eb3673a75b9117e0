//! People who may sign in, and the directory the login page and the refresh grant read: an
//! immutable snapshot (a persistent map, like the client registry) swapped whole on change.
//!
//! Only users who may sign in are in it: a disabled user, one whose password hash is missing
//! or invalid, or one that lost a username conflict is absent, so "may this user get a token
//! now" is one lookup, and a login for any of them fails exactly like one for an unknown name.

use std::sync::Arc;

use crate::password::{self, PasswordHash};

/// One user, checked, as sign-in reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Stable id: the `sub` of the user's tokens. Never reused for another person.
    pub id: String,
    /// The login name, unique in a directory.
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    /// Organizations the user belongs to (APK's `organization` claim is one of them).
    pub organizations: Vec<String>,
    pub groups: Vec<String>,
    pub password: PasswordHash,
    /// Where the definition came from (`namespace/name`, `file#doc`), for logs.
    pub origin: String,
}

/// Every user who may sign in, by username and by id.
#[derive(Debug, Clone, Default)]
pub struct UserDirectory {
    by_username: imbl::HashMap<String, Arc<UserRecord>>,
    by_id: imbl::HashMap<String, Arc<UserRecord>>,
}

impl UserDirectory {
    /// Add or replace a user. The caller decides who holds a username (and an id) first: an
    /// entry that held either is replaced.
    pub fn insert(&mut self, user: UserRecord) {
        self.remove_username(&user.username);
        self.remove_id(&user.id);
        let user = Arc::new(user);
        self.by_username
            .insert(user.username.clone(), Arc::clone(&user));
        self.by_id.insert(user.id.clone(), user);
    }

    /// Remove the user with this username; `false` when there was none.
    pub fn remove_username(&mut self, username: &str) -> bool {
        match self.by_username.remove(username) {
            Some(old) => {
                self.by_id.remove(&old.id);
                true
            }
            None => false,
        }
    }

    fn remove_id(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id) {
            self.by_username.remove(&old.username);
        }
    }

    pub fn by_username(&self, username: &str) -> Option<&Arc<UserRecord>> {
        self.by_username.get(username)
    }

    /// The user a token or refresh family names, if they may still get tokens.
    pub fn by_id(&self, id: &str) -> Option<&Arc<UserRecord>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_username.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_username.is_empty()
    }

    pub fn users(&self) -> impl Iterator<Item = &Arc<UserRecord>> {
        self.by_username.values()
    }

    /// The user whose username and password these are. An unknown username is checked
    /// against the decoy hash, so both failures cost one Argon2 run and look the same.
    pub fn authenticate(&self, username: &str, password: &[u8]) -> Option<Arc<UserRecord>> {
        match self.by_username.get(username) {
            Some(user) => user.password.verify(password).then(|| Arc::clone(user)),
            None => {
                password::decoy().verify(password);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, username: &str, password: &PasswordHash) -> UserRecord {
        UserRecord {
            id: id.into(),
            username: username.into(),
            display_name: None,
            email: None,
            email_verified: false,
            organizations: vec!["org1".into()],
            groups: vec![],
            password: password.clone(),
            origin: "test".into(),
        }
    }

    #[test]
    fn authenticate_needs_the_right_name_and_password() {
        let hash = PasswordHash::new(b"s3cret").unwrap();
        let mut d = UserDirectory::default();
        d.insert(user("id-1", "alice", &hash));
        assert_eq!(d.authenticate("alice", b"s3cret").unwrap().id, "id-1");
        assert!(d.authenticate("alice", b"wrong").is_none());
        assert!(d.authenticate("Alice", b"s3cret").is_none());
        assert!(d.authenticate("bob", b"s3cret").is_none());
    }

    #[test]
    fn insert_replaces_by_username_and_by_id() {
        let hash = PasswordHash::parse(
            "$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .unwrap();
        let mut d = UserDirectory::default();
        d.insert(user("id-1", "alice", &hash));
        let before = d.clone();
        // Renamed: the old name no longer signs in.
        d.insert(user("id-1", "alice2", &hash));
        assert!(d.by_username("alice").is_none());
        assert_eq!(d.by_id("id-1").unwrap().username, "alice2");
        assert_eq!(d.len(), 1);
        // Another id takes the name: the old holder is gone from both maps.
        d.insert(user("id-2", "alice2", &hash));
        assert!(d.by_id("id-1").is_none());
        assert_eq!(d.len(), 1);
        assert!(d.remove_username("alice2"));
        assert!(!d.remove_username("alice2"));
        assert!(d.is_empty() && d.by_id("id-2").is_none());
        // Snapshots taken earlier are unchanged.
        assert_eq!(before.by_username("alice").unwrap().id, "id-1");
    }
}
