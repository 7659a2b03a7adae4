use std::ops::Deref;

/// A librdkafka client whose drop blocks (a producer flushes, a consumer
/// closes): dropped on a blocking thread, so cancelling a subtask never stalls
/// the async threads that carry heartbeats and the exchange.
pub struct DetachedDrop<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> DetachedDrop<T> {
    pub fn new(client: T) -> Self {
        Self(Some(client))
    }
}

impl<T: Send + 'static> Deref for DetachedDrop<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.0 {
            Some(client) => client,
            // Only `drop` takes the client out.
            None => unreachable!("client used after drop"),
        }
    }
}

impl<T: Send + 'static> Drop for DetachedDrop<T> {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(client))),
            Err(_) => drop(client),
        }
    }
}
