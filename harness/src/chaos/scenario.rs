//! The named scenarios of the chaos program and their seedable schedules:
//! which fault, on which process, when, and for how long.

use super::workload::{JobKind, SinkKind};
use rand::Rng;
use rand::rngs::SmallRng;
use std::time::Duration;

/// The worker failpoints of the checkpoint protocol a scenario can trip:
/// each aborts the worker at one step (see the worker's `fail_point!`s).
pub const FAILPOINTS: &[&str] = &[
    "barrier-before-snapshot",
    "snapshot-before-upload",
    "snapshot-after-upload",
    "after-checkpoint-ack",
    "checkpoint-completed-before-sink-commit",
    "sink-before-commit",
    "sink-after-commit",
];

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of a worker, and a new worker started in its place.
    WorkerKill,
    /// SIGKILL of the leading coordinator, started again later.
    LeaderKill,
    /// SIGSTOP of a worker past the heartbeat timeout, then SIGCONT: a
    /// zombie that wakes up after the job recovered without it.
    WorkerPause,
    /// SIGSTOP of the leading coordinator past the heartbeat timeout, then SIGCONT.
    LeaderPause,
    /// A worker's link to the coordinator cut, then healed.
    PartitionWorkerCoordinator,
    /// One coordinator of three cut off from the other two (the leader or a
    /// follower, drawn), then healed: Raft traffic between it and them is
    /// refused both ways while workers and clients still reach every one.
    PartitionCoordinatorMinority,
    /// The links into a worker's data exchange cut, then healed: the other
    /// workers cannot send it records while it still reaches the coordinator.
    PartitionWorkerWorker,
    /// The checkpoint store (S3) unreachable from every process, then back.
    StoreOutage,
    /// Every exchange with the checkpoint store (S3) delayed.
    SlowStore,
    /// The checkpoint store's file system (a small tmpfs) full, then freed.
    DiskFull,
    /// The S3 sink's object store (MinIO) unreachable, then back: the
    /// sink's commits fail while the link is cut.
    SinkOutage,
    /// Every exchange of the S3 sink with its object store delayed.
    SlowSink,
    /// The Cassandra sink's link to Cassandra cut, then healed.
    CassandraOutage,
    /// A worker's link to the Kafka broker (the program's own) cut, then healed.
    PartitionWorkerBroker,
    /// The Kafka broker (the program's own) SIGKILLed, then started again
    /// on the same data and ports.
    KafkaRestart,
    /// Every exchange of the workers with the Kafka broker (the program's
    /// own) delayed: the exactly-once Kafka sink's commits slow down.
    SlowKafkaSink,
    /// Cassandra (the program's own) SIGKILLed, then started again on the
    /// same data and ports.
    CassandraRestart,
    /// The file system of the file sink's output directory (a small tmpfs)
    /// full, then freed.
    WorkerDiskFull,
    /// A worker started with this failpoint armed aborts at that step of a
    /// checkpoint; a new worker is started in its place.
    Failpoint(&'static str),
}

/// Where the processes keep their checkpoints, as a scenario needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A directory of the run's own.
    Local,
    /// A prefix of MinIO's `sluice` bucket, reached through a proxy.
    S3,
    /// A directory on a small tmpfs of the run's own.
    Tmpfs,
}

impl Fault {
    /// `true` for faults of one worker, the step's `target`.
    pub fn strikes_a_worker(&self) -> bool {
        matches!(
            self,
            Self::WorkerKill
                | Self::WorkerPause
                | Self::PartitionWorkerCoordinator
                | Self::PartitionWorkerWorker
                | Self::PartitionWorkerBroker
                | Self::Failpoint(_)
        )
    }

    /// `true` for faults of the Kafka broker the job reads and writes: they
    /// need the program's own broker.
    pub fn needs_own_broker(&self) -> bool {
        matches!(
            self,
            Self::PartitionWorkerBroker | Self::KafkaRestart | Self::SlowKafkaSink
        )
    }

    pub fn name(&self) -> String {
        match self {
            Self::WorkerKill => "worker-kill".into(),
            Self::LeaderKill => "leader-kill".into(),
            Self::WorkerPause => "worker-pause".into(),
            Self::LeaderPause => "leader-pause".into(),
            Self::PartitionWorkerCoordinator => "partition-worker-coordinator".into(),
            Self::PartitionWorkerWorker => "partition-worker-worker".into(),
            Self::PartitionCoordinatorMinority => "partition-coordinator-minority".into(),
            Self::StoreOutage => "checkpoint-store-outage".into(),
            Self::SlowStore => "slow-checkpoint-store".into(),
            Self::DiskFull => "disk-full".into(),
            Self::SinkOutage => "s3-sink-outage".into(),
            Self::SlowSink => "slow-sink".into(),
            Self::CassandraOutage => "cassandra-outage".into(),
            Self::PartitionWorkerBroker => "partition-worker-broker".into(),
            Self::KafkaRestart => "kafka-restart".into(),
            Self::SlowKafkaSink => "slow-kafka-sink".into(),
            Self::CassandraRestart => "cassandra-restart".into(),
            Self::WorkerDiskFull => "worker-disk-full".into(),
            Self::Failpoint(name) => format!("failpoint-{name}"),
        }
    }

    /// The faults a run of `coordinators` coordinators with its store on S3
    /// and the program's own broker can draw from at random, with those of
    /// the sink `job` writes to.
    fn random_pool(coordinators: usize, job: JobKind) -> Vec<Fault> {
        let mut pool = vec![
            Self::WorkerKill,
            Self::LeaderKill,
            Self::WorkerPause,
            Self::LeaderPause,
            Self::StoreOutage,
            Self::SlowStore,
        ];
        // A cut into the exchange strikes nothing a job of one stage uses.
        if job.exchanges() {
            pool.push(Self::PartitionWorkerWorker);
        }
        match coordinators {
            1 => pool.push(Self::PartitionWorkerCoordinator),
            _ => pool.push(Self::PartitionCoordinatorMinority),
        }
        // Every job reads from Kafka (the program's own broker).
        pool.extend([Self::PartitionWorkerBroker, Self::KafkaRestart]);
        match job.sink() {
            SinkKind::Kafka => pool.push(Self::SlowKafkaSink),
            SinkKind::S3 => pool.extend([Self::SinkOutage, Self::SlowSink]),
            SinkKind::Cassandra => pool.extend([Self::CassandraOutage, Self::CassandraRestart]),
            SinkKind::Files => pool.push(Self::WorkerDiskFull),
        }
        pool
    }

    /// When and for how long this fault strikes, drawn from `rng`:
    /// `timeout` is the cluster's heartbeat timeout, which faults meant to
    /// make a process look dead outlast.
    pub fn plan(self, rng: &mut SmallRng, workers: usize, timeout: Duration) -> Step {
        let ms = |rng: &mut SmallRng, low: u64, high: u64| {
            Duration::from_millis(rng.random_range(low..=high))
        };
        let before = ms(rng, 1_000, 4_000);
        let target = match self {
            // The failpoint is armed in the first worker only.
            Self::Failpoint(_) => 0,
            // 0: the leader; 1 or 2: the first or second follower.
            Self::PartitionCoordinatorMinority => rng.random_range(0..3),
            _ => rng.random_range(0..workers.max(1)),
        };
        let (hold, delay) = match self {
            Self::WorkerKill => (ms(rng, 0, 1_000), Duration::ZERO),
            Self::LeaderKill => (ms(rng, 0, 2_000), Duration::ZERO),
            Self::WorkerPause
            | Self::LeaderPause
            | Self::PartitionWorkerCoordinator
            | Self::PartitionCoordinatorMinority
            | Self::PartitionWorkerWorker => (timeout + ms(rng, 1_000, 3_000), Duration::ZERO),
            Self::StoreOutage
            | Self::DiskFull
            | Self::SinkOutage
            | Self::CassandraOutage
            | Self::PartitionWorkerBroker
            | Self::WorkerDiskFull => (ms(rng, 2_000, 8_000), Duration::ZERO),
            // How long the process stays down; starting it again takes longer.
            Self::KafkaRestart | Self::CassandraRestart => (ms(rng, 0, 2_000), Duration::ZERO),
            Self::SlowStore | Self::SlowSink | Self::SlowKafkaSink => {
                (ms(rng, 3_000, 8_000), ms(rng, 100, 600))
            }
            Self::Failpoint(_) => (Duration::ZERO, Duration::ZERO),
        };
        Step {
            fault: self,
            target,
            before,
            hold,
            delay,
        }
    }
}

/// One fault of a schedule.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub fault: Fault,
    /// The worker it strikes (by slot), for faults of one worker; for
    /// [`Fault::PartitionCoordinatorMinority`], the coordinator cut off:
    /// 0 the leader, `n` the `n`-th follower by index.
    pub target: usize,
    /// How long the job runs undisturbed before it.
    pub before: Duration,
    /// How long it lasts before it heals (a killed process is started again).
    pub hold: Duration,
    /// The delay of each chunk of data, for [`Fault::SlowStore`],
    /// [`Fault::SlowSink`] and [`Fault::SlowKafkaSink`].
    pub delay: Duration,
}

/// A named scenario: one kind of fault a few times, or faults drawn at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    One(Fault),
    Random,
}

impl Scenario {
    /// Every scenario `--scenario all` runs: each kind of fault once
    /// (`random` is left to the soak).
    pub fn all() -> Vec<Scenario> {
        let mut all: Vec<Scenario> = [
            Fault::WorkerKill,
            Fault::LeaderKill,
            Fault::WorkerPause,
            Fault::LeaderPause,
            Fault::PartitionWorkerCoordinator,
            Fault::PartitionCoordinatorMinority,
            Fault::PartitionWorkerWorker,
            Fault::StoreOutage,
            Fault::SlowStore,
            Fault::DiskFull,
            Fault::SinkOutage,
            Fault::SlowSink,
            Fault::CassandraOutage,
            Fault::PartitionWorkerBroker,
            Fault::KafkaRestart,
            Fault::SlowKafkaSink,
            Fault::CassandraRestart,
            Fault::WorkerDiskFull,
        ]
        .into_iter()
        .map(Scenario::One)
        .collect();
        all.extend(
            FAILPOINTS
                .iter()
                .map(|f| Scenario::One(Fault::Failpoint(f))),
        );
        all
    }

    pub fn name(&self) -> String {
        match self {
            Self::One(fault) => fault.name(),
            Self::Random => "random".into(),
        }
    }

    /// The scenario of this name, `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Scenario> {
        if name == "random" {
            return Some(Self::Random);
        }
        Self::all().into_iter().find(|s| s.name() == name)
    }

    /// What the scenario does, for `--list`.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::One(Fault::WorkerKill) => "SIGKILL a worker, start a new one in its place",
            Self::One(Fault::LeaderKill) => {
                "SIGKILL the leading coordinator (of 3 unless --coordinators 1), start it again"
            }
            Self::One(Fault::WorkerPause) => {
                "SIGSTOP a worker past the heartbeat timeout, then SIGCONT (zombie)"
            }
            Self::One(Fault::LeaderPause) => {
                "SIGSTOP the leading coordinator (of 3) past the heartbeat timeout, then SIGCONT"
            }
            Self::One(Fault::PartitionWorkerCoordinator) => {
                "cut a worker off from the coordinator past the heartbeat timeout, then heal"
            }
            Self::One(Fault::PartitionCoordinatorMinority) => {
                "cut one coordinator of 3 (the leader or a follower) off from the others, then heal"
            }
            Self::One(Fault::PartitionWorkerWorker) => {
                "cut the links into a worker's data exchange (a job with key_by, else the keyed job), then heal"
            }
            Self::One(Fault::StoreOutage) => {
                "make the checkpoint store (S3 on MinIO) unreachable, then reachable again"
            }
            Self::One(Fault::SlowStore) => "delay every exchange with the checkpoint store (S3)",
            Self::One(Fault::DiskFull) => {
                "fill the checkpoint store's file system (a small tmpfs), then free it"
            }
            Self::One(Fault::SinkOutage) => {
                "make the S3 sink's object store (MinIO) unreachable during its commits (S3 job)"
            }
            Self::One(Fault::SlowSink) => {
                "delay every exchange of the S3 sink with its object store (S3 job)"
            }
            Self::One(Fault::CassandraOutage) => {
                "make Cassandra unreachable from the Cassandra sink (Cassandra job)"
            }
            Self::One(Fault::PartitionWorkerBroker) => {
                "cut a worker off from the Kafka broker (the program's own), then heal"
            }
            Self::One(Fault::KafkaRestart) => {
                "SIGKILL the Kafka broker (the program's own), start it again on its data"
            }
            Self::One(Fault::SlowKafkaSink) => {
                "delay every exchange of the workers with the Kafka broker (the program's own)"
            }
            Self::One(Fault::CassandraRestart) => {
                "SIGKILL Cassandra (the program's own), start it again on its data (Cassandra job)"
            }
            Self::One(Fault::WorkerDiskFull) => {
                "fill the file system of the file sink's output directory (a small tmpfs), then free it (files job)"
            }
            Self::One(Fault::Failpoint(_)) => {
                "a worker aborts at this step of a checkpoint (failpoint); a new one takes over"
            }
            Self::Random => "faults drawn at random, for --duration (the soak) or --faults of them",
        }
    }

    /// Coordinators the scenario runs with: `asked` (`--coordinators`) when
    /// given, else 3 for the leader's faults and 1 for the others. A worker
    /// cut off from the coordinator needs 1: with a group, workers follow
    /// the leader to its own address, past the proxy; a coordinator cut off
    /// from the others needs 3.
    pub fn coordinators(&self, asked: Option<usize>) -> usize {
        match self {
            Self::One(Fault::PartitionWorkerCoordinator) => 1,
            Self::One(Fault::PartitionCoordinatorMinority) => 3,
            Self::One(Fault::LeaderKill | Fault::LeaderPause) => asked.unwrap_or(3),
            _ => asked.unwrap_or(1),
        }
    }

    /// The job the scenario runs: `asked` (`--job`), except that a fault of
    /// a sink needs a job writing to it: the S3 sink's faults the S3 job,
    /// Cassandra's the Cassandra job, a slow Kafka sink the keyed job,
    /// unless `asked` writes there too; a full disk the files job; a cut
    /// into the exchange the keyed job unless `asked` has a `key_by`.
    pub fn job(&self, asked: JobKind) -> JobKind {
        let writing_to = |sink: SinkKind, otherwise: JobKind| match asked.sink() == sink {
            true => asked,
            false => otherwise,
        };
        match self {
            Self::One(Fault::SinkOutage | Fault::SlowSink) => writing_to(SinkKind::S3, JobKind::S3),
            Self::One(Fault::CassandraOutage | Fault::CassandraRestart) => {
                writing_to(SinkKind::Cassandra, JobKind::Cassandra)
            }
            Self::One(Fault::WorkerDiskFull) => JobKind::Files,
            // A job of one stage sends nothing over the exchange: the cut
            // would strike nothing and the run pass without a fault.
            Self::One(Fault::PartitionWorkerWorker) if !asked.exchanges() => JobKind::Keyed,
            Self::One(Fault::SlowKafkaSink) => writing_to(SinkKind::Kafka, JobKind::Keyed),
            _ => asked,
        }
    }

    /// Whether a run of this scenario with `coordinators` coordinators and
    /// `job` may strike `fault`: what the run prepares for it (a Cassandra
    /// of its own, a tmpfs under the file sink).
    pub fn may_strike(&self, fault: Fault, coordinators: usize, job: JobKind) -> bool {
        match self {
            Self::One(f) => *f == fault,
            Self::Random => Fault::random_pool(coordinators, job).contains(&fault),
        }
    }

    /// `true` when the scenario needs the program's own Kafka broker.
    pub fn needs_own_broker(&self) -> bool {
        match self {
            Self::One(f) => f.needs_own_broker(),
            // It may draw the broker's faults.
            Self::Random => true,
        }
    }

    pub fn store(&self) -> StoreKind {
        match self {
            Self::One(Fault::StoreOutage | Fault::SlowStore) | Self::Random => StoreKind::S3,
            Self::One(Fault::DiskFull) => StoreKind::Tmpfs,
            Self::One(_) => StoreKind::Local,
        }
    }

    /// The next fault of the schedule, planned with `rng`: the scenario's
    /// own, or for `random` one drawn from those a run of `coordinators`
    /// coordinators and this job can strike.
    pub fn next(
        &self,
        rng: &mut SmallRng,
        coordinators: usize,
        job: JobKind,
        workers: usize,
        timeout: Duration,
    ) -> Step {
        let fault = match self {
            Self::One(fault) => *fault,
            Self::Random => {
                let pool = Fault::random_pool(coordinators, job);
                pool[rng.random_range(0..pool.len())]
            }
        };
        fault.plan(rng, workers, timeout)
    }

    /// The faults struck together next: [`Scenario::next`]'s, and for
    /// `random` one time in four a second fault at the same moment, of a
    /// worker when the first is not and the other way round.
    pub fn next_group(
        &self,
        rng: &mut SmallRng,
        coordinators: usize,
        job: JobKind,
        workers: usize,
        timeout: Duration,
    ) -> Vec<Step> {
        let first = self.next(rng, coordinators, job, workers, timeout);
        let mut group = vec![first];
        if *self == Self::Random && rng.random_range(0..4) == 0 {
            let pool: Vec<Fault> = Fault::random_pool(coordinators, job)
                .into_iter()
                .filter(|f| f.strikes_a_worker() != first.fault.strikes_a_worker())
                .collect();
            if !pool.is_empty() {
                let fault = pool[rng.random_range(0..pool.len())];
                let mut second = fault.plan(rng, workers, timeout);
                second.before = first.before;
                group.push(second);
            }
        }
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::BTreeSet;

    #[test]
    fn random_strikes_some_faults_together_one_of_a_worker_and_one_not() {
        let mut rng = SmallRng::seed_from_u64(11);
        let groups: Vec<Vec<Step>> = (0..200)
            .map(|_| {
                Scenario::Random.next_group(&mut rng, 1, JobKind::S3, 3, Duration::from_secs(2))
            })
            .collect();
        let pairs: Vec<&Vec<Step>> = groups.iter().filter(|g| g.len() == 2).collect();
        assert!(!pairs.is_empty() && pairs.len() < groups.len());
        for pair in pairs {
            assert_ne!(
                pair[0].fault.strikes_a_worker(),
                pair[1].fault.strikes_a_worker()
            );
        }
        let mut rng = SmallRng::seed_from_u64(11);
        for _ in 0..50 {
            let group = Scenario::One(Fault::WorkerKill).next_group(
                &mut rng,
                1,
                JobKind::Keyed,
                3,
                Duration::ZERO,
            );
            assert_eq!(group.len(), 1);
        }
    }

    #[test]
    fn a_failpoint_strikes_the_worker_it_is_armed_in() {
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let step = Fault::Failpoint("sink-before-commit").plan(&mut rng, 3, Duration::ZERO);
            assert_eq!(step.target, 0);
        }
    }

    #[test]
    fn each_new_scenario_runs_the_job_and_broker_its_fault_needs() {
        let one = Scenario::One;
        for fault in [
            Fault::PartitionWorkerBroker,
            Fault::KafkaRestart,
            Fault::SlowKafkaSink,
        ] {
            assert!(one(fault).needs_own_broker());
            assert_eq!(one(fault).job(JobKind::Remap), JobKind::Remap);
            assert_eq!(one(fault).job(JobKind::Seed002), JobKind::Seed002);
        }
        // A slow Kafka sink needs a job writing to Kafka; the broker's other
        // faults strike the source of any job.
        assert_eq!(one(Fault::SlowKafkaSink).job(JobKind::S3), JobKind::Keyed);
        assert_eq!(
            one(Fault::KafkaRestart).job(JobKind::Seed001),
            JobKind::Seed001
        );
        assert!(!one(Fault::CassandraOutage).needs_own_broker());
        assert!(Scenario::Random.needs_own_broker());
        assert_eq!(
            one(Fault::CassandraRestart).job(JobKind::Keyed),
            JobKind::Cassandra
        );
        assert_eq!(
            one(Fault::CassandraRestart).job(JobKind::Seed003),
            JobKind::Seed003
        );
        assert_eq!(
            one(Fault::SinkOutage).job(JobKind::Seed004),
            JobKind::Seed004
        );
        assert_eq!(one(Fault::SinkOutage).job(JobKind::Seed000), JobKind::S3);
        assert_eq!(
            one(Fault::WorkerDiskFull).job(JobKind::Keyed),
            JobKind::Files
        );
        assert_eq!(one(Fault::WorkerDiskFull).store(), StoreKind::Local);
    }

    #[test]
    fn a_cut_into_the_exchange_runs_a_job_that_uses_it() {
        let cut = Scenario::One(Fault::PartitionWorkerWorker);
        assert_eq!(cut.job(JobKind::Seed001), JobKind::Keyed);
        assert_eq!(cut.job(JobKind::Remap), JobKind::Keyed);
        assert_eq!(cut.job(JobKind::Seed002), JobKind::Seed002);
        assert_eq!(cut.job(JobKind::Seed003), JobKind::Seed003);
        let drawn = |job| {
            let mut rng = SmallRng::seed_from_u64(5);
            (0..2_000).any(|_| {
                Scenario::Random
                    .next(&mut rng, 1, job, 3, Duration::from_secs(2))
                    .fault
                    == Fault::PartitionWorkerWorker
            })
        };
        assert!(!drawn(JobKind::Seed001));
        assert!(!drawn(JobKind::Remap));
        assert!(drawn(JobKind::Seed004));
    }

    #[test]
    fn random_draws_every_fault_a_job_can_meet() {
        let drawn = |coordinators, job| {
            let mut rng = SmallRng::seed_from_u64(5);
            (0..2_000)
                .map(|_| {
                    Scenario::Random
                        .next(&mut rng, coordinators, job, 3, Duration::from_secs(2))
                        .fault
                        .name()
                })
                .collect::<BTreeSet<String>>()
        };
        let keyed = drawn(1, JobKind::Keyed);
        for name in [
            "partition-worker-broker",
            "kafka-restart",
            "slow-kafka-sink",
            "partition-worker-coordinator",
        ] {
            assert!(keyed.contains(name), "{name} in {keyed:?}");
        }
        assert!(drawn(3, JobKind::Keyed).contains("partition-coordinator-minority"));
        let cassandra = drawn(1, JobKind::Seed003);
        assert!(cassandra.contains("cassandra-restart") && cassandra.contains("cassandra-outage"));
        assert!(!cassandra.contains("slow-kafka-sink"));
        assert!(drawn(1, JobKind::Files).contains("worker-disk-full"));
        assert!(drawn(1, JobKind::Seed004).contains("s3-sink-outage"));
    }

    #[test]
    fn every_scenario_is_found_by_its_name() {
        for s in Scenario::all().into_iter().chain([Scenario::Random]) {
            assert_eq!(Scenario::parse(&s.name()), Some(s));
        }
        assert_eq!(Scenario::parse("no-such-fault"), None);
    }

    #[test]
    fn a_seed_gives_the_same_schedule() {
        let plan = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..20)
                .map(|_| {
                    let s = Scenario::Random.next(
                        &mut rng,
                        1,
                        JobKind::Keyed,
                        3,
                        Duration::from_secs(2),
                    );
                    (s.fault, s.target, s.before, s.hold, s.delay)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(plan(7), plan(7));
        assert_ne!(plan(7), plan(8));
    }
}
