//! Reading an answer's body under a size cap: a misbehaving or hostile
//! server (a provider, a token endpoint, a roster URL) must not fill our
//! memory.

/// Largest provider answer read: a page of members or roles is a few KiB.
pub const MAX_PROVIDER_BODY: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Broken(#[from] reqwest::Error),
}

/// The whole body, or `TooLarge` as soon as it passes `cap` bytes (before
/// reading when the server announces its length).
pub async fn read_capped(mut response: reqwest::Response, cap: u64) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(BodyError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(BodyError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that streams `len` bytes without announcing the length.
    async fn streaming(len: usize) -> String {
        use axum::body::Body;
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move {
                let chunks = futures::stream::iter(
                    (0..len / 1024).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024])),
                );
                Body::from_stream(chunks)
            }),
        );
        crate::sim::serve_on_loopback(app).await
    }

    #[tokio::test]
    async fn bodies_past_the_cap_are_refused() {
        let url = format!("{}/", streaming(64 * 1024).await);
        let get = || async { reqwest::get(&url).await.unwrap() };
        assert_eq!(
            read_capped(get().await, 64 * 1024).await.unwrap().len(),
            64 * 1024
        );
        assert!(matches!(
            read_capped(get().await, 16 * 1024).await,
            Err(BodyError::TooLarge(_))
        ));
    }
}
