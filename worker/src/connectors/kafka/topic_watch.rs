//! Whether a topic a producer waits on still exists. librdkafka holds
//! messages to a deleted topic without a word until its own timeout, so a
//! writer that waits long for acknowledgements (or for room in its queue)
//! looks for the topic itself, now and then.

use super::TOPIC_CHECK_EVERY;
use crate::error::{Result, TopicRole, WorkerError};
use rdkafka::error::KafkaError;
use std::time::Instant;

/// One writer's watch over its topic while it waits.
pub struct TopicWatch {
    role: TopicRole,
    topic: String,
    brokers: String,
    /// When the current wait began, and when the topic was last looked for.
    waiting_since: Option<Instant>,
    looked_at: Option<Instant>,
    /// Answers in a row that the topic does not exist.
    missing: u32,
}

impl TopicWatch {
    pub fn new(role: TopicRole, topic: &str, brokers: &str) -> Self {
        Self {
            role,
            topic: topic.to_string(),
            brokers: brokers.to_string(),
            waiting_since: None,
            looked_at: None,
            missing: 0,
        }
    }

    /// Whether the topic should be looked for now: the wait (begun at the
    /// first call; a watch lasts one wait) has lasted [`TOPIC_CHECK_EVERY`]
    /// since it began or since the last look.
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        let since = *self.waiting_since.get_or_insert(now);
        now.duration_since(self.looked_at.unwrap_or(since)) >= TOPIC_CHECK_EVERY
    }

    /// Looks for the topic with `exists` (run on a blocking thread; see
    /// `topic_exists`). Fails with [`WorkerError::TopicGone`] on the second
    /// answer in a row, [`TOPIC_CHECK_EVERY`] apart, that it does not exist:
    /// one broker's answer may lag behind (a broker just restarted, a topic
    /// just created). An answer that cannot be had counts as neither.
    pub async fn look(
        &mut self,
        exists: impl FnOnce() -> std::result::Result<bool, KafkaError> + Send + 'static,
    ) -> Result<()> {
        self.looked_at = Some(Instant::now());
        match tokio::task::spawn_blocking(exists).await {
            Ok(Ok(false)) => self.missing += 1,
            Ok(Ok(true)) => self.missing = 0,
            Ok(Err(_)) | Err(_) => {}
        }
        if self.missing >= 2 {
            return Err(WorkerError::TopicGone {
                role: self.role,
                topic: self.topic.clone(),
                brokers: self.brokers.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_answers_in_a_row_that_the_topic_is_missing_make_it_gone() {
        let mut watch = TopicWatch::new(TopicRole::Sink, "t", "b:1");
        assert!(!watch.due(), "a wait just begun");
        watch
            .look(|| Ok(false))
            .await
            .expect("one answer is not enough");
        watch.look(|| Ok(true)).await.expect("it exists");
        watch.look(|| Ok(false)).await.expect("one answer again");
        watch
            .look(|| Err(KafkaError::Canceled))
            .await
            .expect("no answer counts as neither");
        let gone = watch.look(|| Ok(false)).await.expect_err("two in a row");
        assert!(gone.to_string().contains("sink topic `t`"), "{gone}");
    }
}
