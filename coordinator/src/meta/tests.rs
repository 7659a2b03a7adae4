use super::*;
use sluice_common::JobSpec;

fn spec() -> JobSpec {
    JobSpec::parse_resolved(
        r#"{"name": "j", "parallelism": 2,
            "source": {"kafka": {"brokers": "b:1", "topic": "t"}},
            "sink": {"kafka": {"brokers": "b:1", "topic": "out"}}}"#,
    )
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
    }
}

fn submitted() -> (ClusterMeta, JobId) {
    let mut meta = ClusterMeta::default();
    let Applied::JobCreated(job) = meta.apply(Command::SubmitJob {
        spec: Box::new(spec()),
        source_partitions: 2,
        submitted_at_ms: 0,
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
    });
}

#[test]
fn job_runs_once_every_task_runs() {
    let (mut meta, job) = submitted();
    set(&mut meta, &job, 0, TaskState::Running, None);
    assert_eq!(meta.jobs[&job].state, JobState::Scheduling);
    set(&mut meta, &job, 1, TaskState::Running, None);
    assert_eq!(meta.jobs[&job].state, JobState::Running);
}

#[test]
fn a_failed_task_fails_the_job_with_its_reason() {
    let (mut meta, job) = submitted();
    set(&mut meta, &job, 0, TaskState::Running, None);
    set(
        &mut meta,
        &job,
        1,
        TaskState::Failed,
        Some("worker worker-1 lost"),
    );
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
fn cancelling_ends_when_no_task_is_live() {
    let (mut meta, job) = submitted();
    meta.apply(Command::SetJobState {
        job: job.clone(),
        state: JobState::Cancelling,
        failure: None,
    });
    set(&mut meta, &job, 0, TaskState::Cancelled, None);
    assert_eq!(meta.jobs[&job].state, JobState::Cancelling);
    set(&mut meta, &job, 1, TaskState::Cancelled, None);
    assert_eq!(meta.jobs[&job].state, JobState::Cancelled);
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
