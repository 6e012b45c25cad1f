//! Single-use tokens: a streaming RPC stores what the client asked for under a random
//! token and returns a URL naming it; the first connection that presents the token
//! takes the request, and a token not taken within the TTL is forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use super::StreamingError;

/// 16 random bytes: unguessable, and short enough for a URL path segment.
const TOKEN_BYTES: usize = 16;

pub struct Tokens<T> {
    ttl: Duration,
    max: usize,
    waiting: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T> Tokens<T> {
    /// Tokens valid for `ttl`; at most `max` waiting for their client at once.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Tokens {
            ttl,
            max,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    pub fn insert(&self, request: T) -> Result<String, StreamingError> {
        self.insert_at(request, Instant::now())
    }

    /// The request stored under `token`, once: a second take, or one after the TTL,
    /// finds nothing.
    pub fn take(&self, token: &str) -> Option<T> {
        self.take_at(token, Instant::now())
    }

    fn insert_at(&self, request: T, now: Instant) -> Result<String, StreamingError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| StreamingError::Random(e.to_string()))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.retain(|_, (expires, _)| *expires > now);
        if waiting.len() >= self.max {
            return Err(StreamingError::TooManyRequests(self.max));
        }
        waiting.insert(token.clone(), (now + self.ttl, request));
        Ok(token)
    }

    fn take_at(&self, token: &str, now: Instant) -> Option<T> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let (expires, request) = waiting.remove(token)?;
        (expires > now).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_taken_once() {
        let tokens = Tokens::new(Duration::from_secs(60), 10);
        let t = tokens.insert("pod-a").unwrap();
        let u = tokens.insert("pod-b").unwrap();
        assert_ne!(t, u);
        assert!(t.len() >= 20 && !t.contains('/'), "{t}");
        assert_eq!(tokens.take(&t), Some("pod-a"));
        assert_eq!(tokens.take(&t), None, "single use");
        assert_eq!(tokens.take("made-up"), None);
        assert_eq!(tokens.take(&u), Some("pod-b"));
    }

    #[test]
    fn a_token_expires() {
        let tokens = Tokens::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        let t = tokens.insert_at(1, now).unwrap();
        assert_eq!(tokens.take_at(&t, now + Duration::from_secs(61)), None);
        let t = tokens.insert_at(2, now).unwrap();
        assert_eq!(tokens.take_at(&t, now + Duration::from_secs(59)), Some(2));
    }

    #[test]
    fn waiting_tokens_are_bounded_and_expired_ones_make_room() {
        let tokens = Tokens::new(Duration::from_secs(60), 2);
        let now = Instant::now();
        tokens.insert_at(1, now).unwrap();
        tokens.insert_at(2, now).unwrap();
        assert!(matches!(
            tokens.insert_at(3, now),
            Err(StreamingError::TooManyRequests(2))
        ));
        assert!(tokens.insert_at(3, now + Duration::from_secs(61)).is_ok());
    }
}
