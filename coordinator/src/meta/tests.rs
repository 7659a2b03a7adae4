use super::*;
use sluice_common::JobSpec;

fn spec(max_restarts: u32) -> JobSpec {
    JobSpec::parse_resolved(&format!(
        r#"{{"name": "j", "parallelism": 2, "restart": {{"max_attempts": {max_restarts}, "backoff": "1s"}},
            "source": {{"kafka": {{"brokers": "b:1", "topic": "t"}}}},
            "sink": {{"kafka": {{"brokers": "b:1", "topic": "out"}}}}}}"#
    ))
    .expect("valid spec")
}

fn task(job: &JobId, index: u32) -> TaskRecord {
    TaskRecord {
        id: TaskId::for_subtask(job, 0, index, 0),
        stage: 0,
        index,
        worker: WorkerId::from_seq(1),
        partitions: vec![index as i32],
        state: TaskState::Deploying,
        error: None,
        fault: None,
        causes: Vec::new(),
        resets_recorded: 0,
    }
}

fn submitted(max_restarts: u32) -> (ClusterMeta, JobId) {
    let mut meta = ClusterMeta::default();
    let Applied::JobCreated(job) = meta.apply(Command::SubmitJob {
        uid: "u".into(),
        spec: Box::new(spec(max_restarts)),
        source_partitions: 2,
        submitted_at_ms: 0,
        from_savepoint: None,
        start_offsets: BTreeMap::new(),
    }) else {
        panic!("job not created");
    };
    meta.apply(Command::AssignTasks {
        job: job.clone(),
        tasks: vec![task(&job, 0), task(&job, 1)],
    });
    (meta, job)
}

fn set(meta: &mut ClusterMeta, job: &JobId, index: u32, state: TaskState, error: Option<&str>) {
    meta.apply(Command::SetTaskState {
        job: job.clone(),
        task: TaskId::for_subtask(job, 0, index, 0),
        state,
        error: error.map(String::from),
        fault: None,
        causes: Vec::new(),
        at_ms: 10_000,
    });
}

#[test]
fn job_runs_once_every_task_runs() {
    let (mut meta, job) = submitted(0);
    set(&mut meta, &job, 0, TaskState::Running, None);
    assert_eq!(meta.jobs[&job].state, JobState::Scheduling);
    set(&mut meta, &job, 1, TaskState::Running, None);
    assert_eq!(meta.jobs[&job].state, JobState::Running);
}

/// A job whose task 0 runs and whose task 1 failed with its worker lost.
fn second_task_lost(max_restarts: u32) -> (ClusterMeta, JobId) {
    let (mut meta, job) = submitted(max_restarts);
    set(&mut meta, &job, 0, TaskState::Running, None);
    set(
        &mut meta,
        &job,
        1,
        TaskState::Failed,
        Some("worker worker-1 lost"),
    );
    (meta, job)
}

#[test]
fn a_failed_task_fails_the_job_with_its_reason() {
    let (meta, job) = second_task_lost(0);
    let j = &meta.jobs[&job];
    assert_eq!(j.state, JobState::Failed);
    assert!(
        j.failure
            .as_deref()
            .unwrap_or("")
            .contains("worker worker-1 lost")
    );
    assert!(!j.wants_tasks_running());
}

#[test]
fn a_failed_task_restarts_the_job_as_a_new_attempt_after_its_backoff() {
    let (meta, job) = second_task_lost(2);
    let j = &meta.jobs[&job];
    assert_eq!(j.state, JobState::Scheduling);
    assert_eq!((j.attempt, j.restarts), (1, 1));
    assert!(j.tasks.is_empty(), "the failed attempt's tasks are dropped");
    assert_eq!(j.not_before_ms, 11_000);
    assert!(
        j.last_failure
            .as_deref()
            .unwrap_or("")
            .contains("worker worker-1 lost")
    );
}

#[test]
fn a_spec_fault_fails_the_job_at_once_whatever_restarts_are_left() {
    let (mut meta, job) = submitted(10);
    set(&mut meta, &job, 0, TaskState::Running, None);
    meta.apply(Command::SetTaskState {
        job: job.clone(),
        task: TaskId::for_subtask(&job, 0, 1, 0),
        state: TaskState::Failed,
        error: Some("table ks.t does not exist".into()),
        fault: Some(Fault::Spec),
        causes: vec!["keyspace ks has no table t".into()],
        at_ms: 10_000,
    });
    let j = &meta.jobs[&job];
    assert_eq!(j.state, JobState::Failed);
    let failed = j.events[0].to_proto();
    assert_eq!(failed.kind, "task_failed");
    assert_eq!(failed.causes, ["keyspace ks has no table t"]);
    assert_eq!(j.restarts, 0);
    let failure = j.failure.as_deref().unwrap_or("");
    assert!(failure.contains("ks.t does not exist"), "{failure}");
    assert!(failure.contains("not restarted"), "{failure}");
}

#[test]
fn an_external_fault_restarts_the_job() {
    let (mut meta, job) = submitted(10);
    meta.apply(Command::SetTaskState {
        job: job.clone(),
        task: TaskId::for_subtask(&job, 0, 1, 0),
        state: TaskState::Failed,
        error: Some("broker unreachable".into()),
        fault: Some(Fault::External),
        causes: Vec::new(),
        at_ms: 10_000,
    });
    assert_eq!(meta.jobs[&job].state, JobState::Scheduling);
    assert_eq!(meta.jobs[&job].restarts, 1);
}

#[test]
fn checkpoints_keep_the_latest_of_the_current_attempt() {
    let (mut meta, job) = submitted(0);
    set(&mut meta, &job, 0, TaskState::Running, None);
    set(&mut meta, &job, 1, TaskState::Running, None);
    for id in 1..=5 {
        meta.apply(Command::CheckpointCompleted {
            job: job.clone(),
            checkpoint: CompletedCheckpoint {
                id,
                attempt: 0,
                completed_at_ms: 0,
                duration_ms: 1,
                source_offsets: [(0, id as i64 * 10)].into(),
                sink_states: Default::default(),
                state_handles: Default::default(),
                size_bytes: 0,
                alignment_us: 0,
            },
            savepoint: None,
        });
    }
    let stale = meta.apply(Command::CheckpointCompleted {
        job: job.clone(),
        checkpoint: CompletedCheckpoint {
            id: 9,
            attempt: 7,
            completed_at_ms: 0,
            duration_ms: 1,
            source_offsets: Default::default(),
            sink_states: Default::default(),
            state_handles: Default::default(),
            size_bytes: 0,
            alignment_us: 0,
        },
        savepoint: None,
    });
    assert_eq!(stale, Applied::Stale);
    let ids: Vec<u64> = meta.jobs[&job].checkpoints.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        vec![3, 4, 5],
        "three retained; a stale attempt's checkpoint ignored"
    );
}

#[test]
fn cancelling_waits_for_running_tasks_to_stop() {
    let (mut meta, job) = submitted(0);
    set(&mut meta, &job, 0, TaskState::Running, None);
    meta.apply(Command::SetJobState {
        job: job.clone(),
        state: JobState::Cancelling,
        failure: None,
    });
    assert_eq!(meta.jobs[&job].state, JobState::Cancelling);
    set(&mut meta, &job, 0, TaskState::Cancelled, None);
    assert_eq!(meta.jobs[&job].state, JobState::Cancelled);
}

#[test]
fn cancelling_ends_when_no_task_is_live() {
    let (mut meta, job) = submitted(0);
    meta.apply(Command::SetJobState {
        job: job.clone(),
        state: JobState::Cancelling,
        failure: None,
    });
    assert_eq!(
        meta.jobs[&job].state,
        JobState::Cancelled,
        "tasks never reported running have nothing to stop"
    );
}

#[test]
fn unknown_job_changes_nothing() {
    let mut meta = ClusterMeta::default();
    let applied = meta.apply(Command::SetJobState {
        job: JobId::from_seq(9),
        state: JobState::Failed,
        failure: None,
    });
    assert_eq!(applied, Applied::NotFound);
}

#[test]
fn state_and_commands_survive_serialisation() {
    let (mut meta, job) = submitted(3);
    set(&mut meta, &job, 0, TaskState::Running, None);
    let json = serde_json::to_string(&meta).expect("serialises");
    let back: ClusterMeta = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(serde_json::to_string(&back).expect("serialises"), json);
    assert_eq!(back.jobs[&job].spec, meta.jobs[&job].spec);
    assert_eq!(back.jobs[&job].tasks[0].state, TaskState::Running);
    let cmd = Command::SetJobState {
        job: job.clone(),
        state: JobState::Cancelling,
        failure: None,
    };
    let cmd: Command =
        serde_json::from_str(&serde_json::to_string(&cmd).expect("ser")).expect("de");
    assert!(matches!(
        cmd,
        Command::SetJobState {
            state: JobState::Cancelling,
            ..
        }
    ));
}

#[test]
fn reserved_checkpoint_ids_only_grow_and_survive_a_restart_of_the_job() {
    let (mut meta, job) = submitted(3);
    let reserve = |meta: &mut ClusterMeta, up_to| {
        meta.apply(Command::ReserveCheckpointIds {
            job: job.clone(),
            up_to,
        })
    };
    assert_eq!(reserve(&mut meta, 100), Applied::Done);
    // A late entry of an older leader lowers nothing.
    assert_eq!(reserve(&mut meta, 40), Applied::Done);
    assert_eq!(meta.jobs[&job].checkpoint_ids_reserved, 100);
    set(&mut meta, &job, 0, TaskState::Failed, Some("boom"));
    assert_eq!(meta.jobs[&job].attempt, 1);
    assert_eq!(meta.jobs[&job].checkpoint_ids_reserved, 100);
    let unknown = meta.apply(Command::ReserveCheckpointIds {
        job: JobId::from_seq(99),
        up_to: 1,
    });
    assert_eq!(unknown, Applied::NotFound);
}

fn exactly_once(meta: &mut ClusterMeta, job: &JobId) {
    let j = meta.jobs.get_mut(job).expect("job");
    j.spec.delivery = sluice_common::spec::Delivery::ExactlyOnce;
}

#[test]
fn an_exactly_once_job_that_failed_for_good_has_transactions_to_settle_once() {
    let (mut meta, job) = second_task_lost(0);
    assert_eq!(meta.jobs[&job].state, JobState::Failed);
    assert!(
        !meta.jobs[&job].transactions_to_settle(),
        "at least once: no transactions"
    );
    exactly_once(&mut meta, &job);
    assert!(meta.jobs[&job].transactions_to_settle());
    assert_eq!(
        meta.apply(Command::TransactionsSettled { job: job.clone() }),
        Applied::Done
    );
    assert!(!meta.jobs[&job].transactions_to_settle());
}

#[test]
fn a_cancelled_job_has_transactions_to_settle_and_a_running_one_none() {
    let (mut meta, job) = submitted(3);
    exactly_once(&mut meta, &job);
    set(&mut meta, &job, 0, TaskState::Running, None);
    set(&mut meta, &job, 1, TaskState::Running, None);
    assert!(!meta.jobs[&job].transactions_to_settle());
    assert_eq!(
        meta.apply(Command::TransactionsSettled { job: job.clone() }),
        Applied::Stale,
        "a running job's transactions are its sinks' business"
    );
    meta.apply(Command::SetJobState {
        job: job.clone(),
        state: JobState::Cancelling,
        failure: None,
    });
    assert!(
        !meta.jobs[&job].transactions_to_settle(),
        "its tasks may still write"
    );
    set(&mut meta, &job, 0, TaskState::Cancelled, None);
    set(&mut meta, &job, 1, TaskState::Cancelled, None);
    assert_eq!(meta.jobs[&job].state, JobState::Cancelled);
    assert!(meta.jobs[&job].transactions_to_settle());
}

#[test]
fn partitions_added_to_the_topic_go_to_the_running_source_tasks_and_later_attempts() {
    let (mut meta, job) = submitted(3);
    set(&mut meta, &job, 0, TaskState::Running, None);
    set(&mut meta, &job, 1, TaskState::Running, None);
    let add = |meta: &mut ClusterMeta, partitions| {
        meta.apply(Command::AddPartitions {
            job: job.clone(),
            partitions,
            at_ms: 5_000,
        })
    };
    assert_eq!(add(&mut meta, 2), Applied::Stale, "not more than known");
    assert_eq!(add(&mut meta, 5), Applied::Done);
    let j = &meta.jobs[&job];
    assert_eq!(j.source_partitions, 5);
    let lists: Vec<Vec<i32>> = j.tasks.iter().map(|t| t.partitions.clone()).collect();
    assert_eq!(lists, vec![vec![0, 2, 4], vec![1, 3]], "p mod parallelism");
    let added = j.events.last().expect("an event").to_proto();
    assert_eq!((added.kind.as_str(), added.count), ("partitions_added", 3));
    assert!(added.message.contains("from 2 to 5"), "{}", added.message);
    // A restart places the new attempt on the grown topic.
    set(&mut meta, &job, 0, TaskState::Failed, Some("boom"));
    let j = &meta.jobs[&job];
    assert_eq!(j.source_partitions, 5);
    let free = [(WorkerId::from_seq(1), 4)].into();
    let placed = crate::scheduler::place(j, free).expect("fits");
    let sources: Vec<Vec<i32>> = placed
        .iter()
        .filter(|t| t.stage == 0)
        .map(|t| t.partitions.clone())
        .collect();
    assert_eq!(sources, vec![vec![0, 2, 4], vec![1, 3]]);
}

#[test]
fn failures_and_restarts_are_job_events() {
    let (mut meta, job) = submitted(1);
    meta.apply(Command::SetTaskState {
        job: job.clone(),
        task: TaskId::for_subtask(&job, 0, 1, 0),
        state: TaskState::Failed,
        error: Some("broker unreachable".into()),
        fault: Some(Fault::External),
        causes: Vec::new(),
        at_ms: 10_000,
    });
    let kinds = |meta: &ClusterMeta| -> Vec<String> {
        meta.jobs[&job]
            .events
            .iter()
            .map(|e| e.to_proto().kind)
            .collect()
    };
    assert_eq!(kinds(&meta), vec!["task_failed", "restarted"]);
    let failed = meta.jobs[&job].events[0].to_proto();
    assert_eq!(failed.error, "broker unreachable");
    assert_eq!(failed.fault, sluice_proto::Fault::External as i32);
    assert_eq!(failed.at_ms, 10_000);
    let restarted = meta.jobs[&job].events[1].to_proto();
    assert_eq!(restarted.attempt, 0, "dated in the attempt that ended");
    assert!(
        restarted.message.contains("attempt 1"),
        "{}",
        restarted.message
    );
    // The second failure uses up the restarts: the job fails for good.
    let attempt1 = |index| TaskRecord {
        id: TaskId::for_subtask(&job, 0, index, 1),
        ..task(&job, index)
    };
    meta.apply(Command::AssignTasks {
        job: job.clone(),
        tasks: vec![attempt1(0), attempt1(1)],
    });
    meta.apply(Command::SetTaskState {
        job: job.clone(),
        task: TaskId::for_subtask(&job, 0, 0, 1),
        state: TaskState::Failed,
        error: Some("broker unreachable".into()),
        fault: Some(Fault::External),
        causes: Vec::new(),
        at_ms: 20_000,
    });
    assert_eq!(
        kinds(&meta),
        vec!["task_failed", "restarted", "task_failed", "job_failed"]
    );
}

fn out_of_range(job: &JobId, position: i64, low: i64, high: i64) -> JobEvent {
    JobEvent {
        at_ms: 1,
        attempt: 0,
        kind: EventKind::OffsetsOutOfRange {
            task: TaskId::for_subtask(job, 0, 0, 0),
            topic: "t".into(),
            partition: 0,
            position,
            low,
            high,
        },
    }
}

#[test]
fn offset_resets_are_recorded_once_and_skipped_offsets_counted() {
    let (mut meta, job) = submitted(3);
    let task = TaskId::for_subtask(&job, 0, 0, 0);
    let record = |meta: &mut ClusterMeta, resets: Vec<(u64, JobEvent)>| {
        meta.apply(Command::RecordOffsetResets {
            job: job.clone(),
            task: task.clone(),
            resets,
        })
    };
    let first = (1, out_of_range(&job, 100, 150, 200));
    assert_eq!(record(&mut meta, vec![first.clone()]), Applied::Done);
    // Every report repeats the task's resets: recorded once.
    let second = (2, out_of_range(&job, 150, 180, 300));
    record(&mut meta, vec![first.clone(), second]);
    let j = &meta.jobs[&job];
    assert_eq!(j.events.len(), 2);
    assert_eq!(j.offsets_skipped, 50 + 30);
    assert_eq!(j.tasks[0].resets_recorded, 2);
    // A later attempt restored from before the skip finds the same gap.
    let again = (1, out_of_range(&job, 100, 150, 260));
    let mut meta2 = meta.clone();
    meta2.jobs.get_mut(&job).expect("job").tasks[0].resets_recorded = 0;
    record(&mut meta2, vec![again]);
    assert_eq!(meta2.jobs[&job].offsets_skipped, 80, "counted once");
    // A topic recreated under the job: a reset, nothing counted as skipped.
    record(&mut meta, vec![(3, out_of_range(&job, 300, 0, 20))]);
    assert_eq!(meta.jobs[&job].offsets_skipped, 80);
    assert_eq!(
        meta.jobs[&job].events.last().map(|e| e.to_proto().kind),
        Some("offsets_reset".into())
    );
}

#[test]
fn a_job_keeps_its_last_hundred_events() {
    let (mut meta, job) = submitted(3);
    let resets = (1..=150)
        .map(|i| {
            (
                i,
                out_of_range(&job, i as i64 * 10, i as i64 * 10 + 1, 10_000),
            )
        })
        .collect();
    meta.apply(Command::RecordOffsetResets {
        job: job.clone(),
        task: TaskId::for_subtask(&job, 0, 0, 0),
        resets,
    });
    let j = &meta.jobs[&job];
    assert_eq!(j.events.len(), 100);
    assert_eq!(
        j.offsets_skipped, 150,
        "the count keeps what the list dropped"
    );
    assert_eq!(j.events[0].to_proto().from_offset, 510);
}

#[test]
fn only_a_job_waiting_for_slots_is_resized_in_place() {
    let mut meta = ClusterMeta::default();
    let Applied::JobCreated(job) = meta.apply(Command::SubmitJob {
        uid: "u".into(),
        spec: Box::new(spec(0)),
        source_partitions: 2,
        submitted_at_ms: 0,
        from_savepoint: None,
        start_offsets: BTreeMap::new(),
    }) else {
        panic!("job not created");
    };
    assert!(meta.jobs[&job].waits_for_slots());
    let resize = |parallelism| Command::ResizeWaiting {
        job: job.clone(),
        parallelism,
    };
    assert_eq!(meta.apply(resize(1)), Applied::Done);
    assert_eq!(meta.jobs[&job].spec.parallelism, 1);
    assert!(meta.jobs[&job].spec_json.contains("\"parallelism\":1"));
    // Placed, its tasks run at the parallelism they were placed for.
    meta.apply(Command::AssignTasks {
        job: job.clone(),
        tasks: vec![task(&job, 0)],
    });
    assert_eq!(meta.apply(resize(2)), Applied::Stale);
    assert_eq!(meta.jobs[&job].spec.parallelism, 1);
}
