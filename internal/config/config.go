// Package config loads Alluvium's configuration with viper: defaults in code,
// then a YAML file (--config), then ALLUVIUM_* environment variables, then
// command-line flags. Keys are dotted and grouped by role; every key and its
// default is listed in configs/README.md (a test keeps the two in step).
package config

import (
	"fmt"
	"hash/fnv"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/alluvium/alluvium/internal/humanize"
)

// Default ports. With a port base P the FS master listens on P and P+1, the
// job master on P+3..P+5, the proxy on P+6 and P+7, and workers from P+20 on.
const (
	DefaultPortBase = 19998

	offFSMasterRPC   = 0
	offFSMasterHTTP  = 1
	offFSMasterRaft  = 2
	offJobMasterRPC  = 3
	offJobMasterHTTP = 4
	offJobMasterRaft = 5
	offProxyREST     = 6
	offProxyS3       = 7
	// Workers under a port base: worker i uses P+20+4i .. P+22+4i.
	offWorkerFirst  = 20
	portsPerWorker  = 4
	MaxLocalWorkers = 40 // keeps every port of `alluvium local` in [P, P+200)
)

// Config is the whole configuration; each role reads its own section.
type Config struct {
	Home      string          `mapstructure:"home"`
	Log       LogConfig       `mapstructure:"log"`
	Security  SecurityConfig  `mapstructure:"security"`
	FSMaster  FSMasterConfig  `mapstructure:"fsmaster"`
	Worker    WorkerConfig    `mapstructure:"worker"`
	JobMaster JobMasterConfig `mapstructure:"jobmaster"`
	JobWorker JobWorkerConfig `mapstructure:"jobworker"`
	Plans     PlansConfig     `mapstructure:"plans"`
	Proxy     ProxyConfig     `mapstructure:"proxy"`
	Console   ConsoleConfig   `mapstructure:"console"`
	Client    ClientConfig    `mapstructure:"client"`
	Limits    LimitsConfig    `mapstructure:"limits"`
	Process   ProcessConfig   `mapstructure:"process"`
}

// ProcessConfig tunes the Go runtime of a long-running server process.
type ProcessConfig struct {
	// GCHeapFloor is the heap the garbage collector may add above the live
	// heap before it runs (internal/gcfloor), as a byte size; "0" leaves
	// Go's default (GOGC=100). A GOGC in the environment wins over it.
	GCHeapFloor string `mapstructure:"gc-heap-floor"`
	// gcHeapFloor is GCHeapFloor parsed (by validate).
	gcHeapFloor int64
}

// HeapFloor is process.gc-heap-floor in bytes.
func (p ProcessConfig) HeapFloor() int64 { return p.gcHeapFloor }

// ConsoleConfig configures the web console the masters' http ports serve
// under /ui/.
type ConsoleConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// SessionTimeout is how long a browser session lasts after logging in.
	SessionTimeout time.Duration `mapstructure:"session-timeout"`
}

// LimitsConfig bounds what any server accepts.
type LimitsConfig struct {
	// MaxRequestBytes bounds one gRPC message a server receives; a bigger
	// one is refused with ResourceExhausted.
	MaxRequestBytes int `mapstructure:"max-request-bytes"`
}

// LogConfig configures zap.
type LogConfig struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // console or json
}

// SecurityConfig configures authentication and permissions.
type SecurityConfig struct {
	Token     string `mapstructure:"token"`      // shared cluster token; empty: read token-file
	TokenFile string `mapstructure:"token-file"` // default <home>/token
	// Insecure runs servers without authentication when no token (and no
	// client CA) is configured; otherwise a server refuses to start.
	Insecure bool `mapstructure:"insecure"`
	// Users maps a user name to its token; the cluster token is the
	// superuser (the system identity).
	Users map[string]string `mapstructure:"users"`
	// Groups maps a user name to its groups, comma-separated; the first is
	// the group of what the user creates. A user not listed has one group
	// named like the user.
	Groups map[string]string `mapstructure:"groups"`
	// Superuser is the system identity's user name; default the process's
	// user. Supergroup's members are superusers too.
	Superuser   string    `mapstructure:"superuser"`
	Supergroup  string    `mapstructure:"supergroup"`
	Permissions bool      `mapstructure:"permissions"` // check POSIX permissions in the FS master
	TLS         TLSConfig `mapstructure:"tls"`
}

// TLSConfig configures TLS on every gRPC and http server and client.
type TLSConfig struct {
	Enabled bool   `mapstructure:"enabled"`
	Cert    string `mapstructure:"cert"` // this process's server certificate (PEM)
	Key     string `mapstructure:"key"`
	// ClientCA, when set, makes the servers require client certificates
	// signed by it (mTLS); a certificate's CN is the caller's user.
	ClientCA   string `mapstructure:"client-ca"`
	CA         string `mapstructure:"ca"` // CA clients trust for server certificates; empty: the system's
	ClientCert string `mapstructure:"client-cert"`
	ClientKey  string `mapstructure:"client-key"`
	ServerName string `mapstructure:"server-name"` // expected server name; empty: the dialled host
}

// FSMasterConfig configures `alluvium fsmaster` and `alluvium secondary`.
type FSMasterConfig struct {
	Host       string            `mapstructure:"host"`      // advertised host name
	BindHost   string            `mapstructure:"bind-host"` // listen address
	RPCPort    int               `mapstructure:"rpc-port"`
	HTTPPort   int               `mapstructure:"http-port"`
	UFS        string            `mapstructure:"ufs"` // root mount URI; default file://<home>/ufs
	UFSOptions map[string]string `mapstructure:"ufs-options"`
	Journal    JournalConfig     `mapstructure:"journal"`
	// Raft configures the group of FS masters when journal.type is
	// embedded (the keys of jobmaster.raft; dir defaults to
	// <journal.dir>/raft).
	Raft   RaftConfig     `mapstructure:"raft"`
	Worker FSWorkerConfig `mapstructure:"worker"`
	User   UserDefaults   `mapstructure:"user"`
	List   ListConfig     `mapstructure:"list"`
	Path   PathLimits     `mapstructure:"path"`
	// MaxExpensiveCalls bounds the expensive calls (listings, recursive
	// changes, UFS metadata loads) running at once; one more waits up to
	// ExpensiveCallWait, then gets ResourceExhausted.
	MaxExpensiveCalls int           `mapstructure:"max-expensive-calls"`
	ExpensiveCallWait time.Duration `mapstructure:"expensive-call-wait"`
	// JobMaster is where the master sends ASYNC_THROUGH files to be
	// persisted (job master rpc addresses, comma-separated; "": never).
	JobMaster string        `mapstructure:"job-master"`
	Persist   PersistConfig `mapstructure:"persist"`
	// TTLCheckInterval is how often the master acts on expired TTLs.
	TTLCheckInterval time.Duration `mapstructure:"ttl-check-interval"`
	// UFSSyncInterval: a directory listed this long after its last sync
	// with the UFS is synced again (new, changed, vanished entries); 0:
	// only when a call asks (ls --sync, load jobs).
	UFSSyncInterval time.Duration   `mapstructure:"ufs-sync-interval"`
	Multipart       MultipartConfig `mapstructure:"multipart"`
	// UFSWatch: files appearing in a mount's UFS behind Alluvium's back
	// reach the completion feed where someone watches it.
	UFSWatch UFSWatchConfig `mapstructure:"ufs-watch"`
}

// UFSWatchConfig is fsmaster.ufs-watch.*: how the leading FS master
// watches the UFS under the paths of the completion feed's consumers.
type UFSWatchConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// Interval: a UFS without notifications (S3) is listed again this
	// often under each watched path.
	Interval time.Duration `mapstructure:"interval"`
	// Settle: a local file no writer was seen closing (written before its
	// directory was watched) is learned once its mtime is this old.
	Settle time.Duration `mapstructure:"settle"`
	// MaxDirs bounds the directories watched under one path.
	MaxDirs int `mapstructure:"max-dirs"`
}

// MultipartConfig bounds multipart uploads (S3's) in the FS master.
type MultipartConfig struct {
	// MaxStagedBytes bounds the bytes one user has in parts of uploads
	// neither completed nor aborted (0: no bound; superusers are not
	// bounded).
	MaxStagedBytes int64 `mapstructure:"max-staged-bytes"`
}

// PersistConfig tunes how the FS master persists ASYNC_THROUGH files.
type PersistConfig struct {
	Delay      time.Duration `mapstructure:"delay"`       // after completion, before the persist job
	MaxBackoff time.Duration `mapstructure:"max-backoff"` // cap of the retry backoff
	BatchSize  int           `mapstructure:"batch-size"`  // files per persist job
}

// JournalConfig configures the FS master's bbolt journal.
type JournalConfig struct {
	// Type is local (one master; bbolt segments and the secondary's
	// checkpoints) or embedded (a raft group of masters, fsmaster.raft).
	Type                    string        `mapstructure:"type"`
	Dir                     string        `mapstructure:"dir"` // default <home>/journal
	SegmentEntries          int64         `mapstructure:"segment-entries"`
	CheckpointPeriodEntries int64         `mapstructure:"checkpoint-period-entries"`
	MaxBatchEntries         int           `mapstructure:"max-batch-entries"`
	MaxLinger               time.Duration `mapstructure:"max-linger"`
	// WriterNice is the nice value the journal writer's thread asks for
	// (journal.Options.WriterNice; 0: leave it).
	WriterNice int `mapstructure:"writer-nice"`
	// How often the secondary looks for closed segments and checkpoint
	// requests, and the master for new checkpoints (to delete segments).
	CheckpointPollInterval time.Duration `mapstructure:"checkpoint-poll-interval"`
	CheckpointsRetained    int           `mapstructure:"checkpoints-retained"`
	// How long `fsadmin checkpoint` waits for the secondary before the
	// master writes the checkpoint itself.
	CheckpointTimeout time.Duration `mapstructure:"checkpoint-timeout"`
}

// Journal types (fsmaster.journal.type).
const (
	JournalLocal    = "local"
	JournalEmbedded = "embedded"
)

// FSWorkerConfig says how the FS master tracks block workers.
type FSWorkerConfig struct {
	Timeout           time.Duration `mapstructure:"timeout"`
	HeartbeatInterval time.Duration `mapstructure:"heartbeat-interval"`
	// MaxHeartbeatsPerSecond stretches the interval and the timeout handed
	// to workers once there are more workers than it (Liveness).
	MaxHeartbeatsPerSecond float64 `mapstructure:"max-heartbeats-per-second"`
}

// UserDefaults are defaults for calls that leave a choice open.
type UserDefaults struct {
	BlockSize int64  `mapstructure:"block-size"`
	WriteType string `mapstructure:"write-type"`
}

// PathLimits bound the paths the FS master accepts (at most the built-in
// limits of internal/paths).
type PathLimits struct {
	MaxLength int `mapstructure:"max-length"`
	MaxDepth  int `mapstructure:"max-depth"`
}

// ListConfig bounds listing pages.
type ListConfig struct {
	DefaultPageSize int `mapstructure:"default-page-size"`
	MaxPageSize     int `mapstructure:"max-page-size"`
}

// TierConfig is one cache tier of a block worker.
type TierConfig struct {
	Alias string `mapstructure:"alias"` // MEM, SSD or HDD
	Path  string `mapstructure:"path"`
	Quota string `mapstructure:"quota"` // bytes, or with a unit: 512MiB, 10GB
}

// WorkerConfig configures `alluvium worker` (block and job roles).
type WorkerConfig struct {
	Role     string       `mapstructure:"role"` // all, block or job
	Host     string       `mapstructure:"host"`
	BindHost string       `mapstructure:"bind-host"`
	RPCPort  int          `mapstructure:"rpc-port"`
	HTTPPort int          `mapstructure:"http-port"`
	Master   string       `mapstructure:"master"` // FS master rpc address
	Dir      string       `mapstructure:"dir"`    // default <home>/worker
	Tiers    []TierConfig `mapstructure:"tiers"`
	Eviction string       `mapstructure:"eviction"` // lru
	// LeaseTimeout bounds a short-circuit lease of a client that never
	// closes it; the block is protected from eviction until then.
	LeaseTimeout time.Duration `mapstructure:"lease-timeout"`
	// AccessCacheTTL is how long a worker trusts the FS master's answer
	// that a user may (or may not) read or write a file's blocks: a
	// chmod reaches data calls already authorized within this time.
	AccessCacheTTL time.Duration `mapstructure:"access-cache-ttl"`
	ChunkSize      int64         `mapstructure:"chunk-size"` // bytes per ReadBlock message
	// DomainSocket is a unix socket serving the block worker service to
	// clients on this host; "" is <dir>/worker.sock, "off" none.
	DomainSocket string `mapstructure:"domain-socket"`
}

// JobMasterConfig configures `alluvium jobmaster`.
type JobMasterConfig struct {
	Host     string            `mapstructure:"host"`
	BindHost string            `mapstructure:"bind-host"`
	RPCPort  int               `mapstructure:"rpc-port"`
	HTTPPort int               `mapstructure:"http-port"`
	Master   string            `mapstructure:"master"` // FS master rpc address
	Raft     RaftConfig        `mapstructure:"raft"`
	Worker   JobWorkerTracking `mapstructure:"worker"`
	Task     TaskConfig        `mapstructure:"task"`
	Job      JobLimits         `mapstructure:"job"`
	Planner  PlannerConfig     `mapstructure:"planner"`
}

// PlannerConfig bounds the job master's planner.
type PlannerConfig struct {
	BatchSize      int `mapstructure:"batch-size"`      // tasks per raft entry
	MaxOutstanding int `mapstructure:"max-outstanding"` // unfinished tasks per job before planning pauses
	Concurrency    int `mapstructure:"concurrency"`     // jobs planned at once
}

// RaftConfig configures the job master's raft group.
type RaftConfig struct {
	NodeID string   `mapstructure:"node-id"` // default host:raft-port
	Port   int      `mapstructure:"port"`
	Dir    string   `mapstructure:"dir"`   // default <home>/jobmaster
	Peers  []string `mapstructure:"peers"` // id=host:raftport|host:rpcport; empty: a single self-bootstrapped node
	// Join starts a node without raft state empty, waiting to be added to
	// an existing group (`alluvium job raft add-peer`), instead of
	// bootstrapping one.
	Join bool `mapstructure:"join"`

	HeartbeatTimeout  time.Duration `mapstructure:"heartbeat-timeout"`
	ElectionTimeout   time.Duration `mapstructure:"election-timeout"`
	SnapshotThreshold int           `mapstructure:"snapshot-threshold"` // log entries between snapshots
	SnapshotInterval  time.Duration `mapstructure:"snapshot-interval"`
	TrailingLogs      int           `mapstructure:"trailing-logs"` // entries kept after a snapshot
}

// JobWorkerTracking says how the job master tracks job workers.
type JobWorkerTracking struct {
	Timeout                time.Duration `mapstructure:"timeout"`
	HeartbeatInterval      time.Duration `mapstructure:"heartbeat-interval"`
	MaxHeartbeatsPerSecond float64       `mapstructure:"max-heartbeats-per-second"` // as FSWorkerConfig's
}

// TaskConfig bounds task execution.
type TaskConfig struct {
	MaxAttempts int           `mapstructure:"max-attempts"`
	Timeout     time.Duration `mapstructure:"timeout"`
	BatchMax    int           `mapstructure:"batch-max"` // task updates per raft entry
	// LocalityWait is how long a task waits in the queue of the job worker
	// beside its data before an idle job worker elsewhere may steal it.
	LocalityWait time.Duration `mapstructure:"locality-wait"`
}

// JobLimits bounds how many jobs are kept and for how long once finished.
type JobLimits struct {
	Retention time.Duration `mapstructure:"retention"`
	Capacity  int           `mapstructure:"capacity"` // jobs kept, running and finished
	// MaxInFlightPerUser bounds the unfinished jobs of one user (0: no
	// bound); the system identity is not bound.
	MaxInFlightPerUser int           `mapstructure:"max-in-flight-per-user"`
	GCInterval         time.Duration `mapstructure:"gc-interval"`
	// VisibleToAll lets every user list and read every job and policy
	// (plans, paths, progress, errors). Off: a user sees only the jobs it
	// submitted (and its policies ran) and its own policies; the system
	// identity and superusers see all.
	VisibleToAll bool `mapstructure:"visible-to-all"`
}

// JobWorkerConfig configures the job role of `alluvium worker`.
type JobWorkerConfig struct {
	RPCPort   int    `mapstructure:"rpc-port"`
	JobMaster string `mapstructure:"job-master"` // comma-separated job master rpc addresses
	Threads   int    `mapstructure:"threads"`
	// QueueDepth is how many tasks beyond Threads the worker takes ahead
	// (0: as many as Threads).
	QueueDepth int `mapstructure:"queue-depth"`
	// RemoteTasks is how many tasks of remote plans (plans.RemoteRunner: a
	// load, whose work is its block workers') run at once beside Threads,
	// on none of them; the leader hands the worker that many beside
	// Threads+QueueDepth. 0: they run on the threads as any task.
	RemoteTasks      int           `mapstructure:"remote-tasks"`
	ProgressInterval time.Duration `mapstructure:"progress-interval"`
	Exec             ExecConfig    `mapstructure:"exec"`
}

// ExecConfig bounds the exec plan.
type ExecConfig struct {
	// Allow lists the commands exec jobs may run (a program name found on
	// the job worker's PATH, or an absolute path), exactly as a job's
	// command[0] names them. Empty: exec jobs are refused.
	Allow []string `mapstructure:"allow"`
}

// PlansConfig configures plan plugins.
type PlansConfig struct {
	// Dir holds plan plugins: executables job masters and job workers load
	// at start (default <home>/plans).
	Dir string `mapstructure:"dir"`
}

// ProxyConfig configures `alluvium proxy`.
type ProxyConfig struct {
	Host     string `mapstructure:"host"`
	BindHost string `mapstructure:"bind-host"`
	RESTPort int    `mapstructure:"rest-port"`
	S3Port   int    `mapstructure:"s3-port"`
	// StreamTimeout closes a REST stream (create-file/open-file id) that
	// saw no call for this long; its half-written file is discarded.
	StreamTimeout time.Duration `mapstructure:"stream-timeout"`
	// MaxStreamsPerUser bounds the REST streams one caller holds open; one
	// more is refused (429) until some close or expire.
	MaxStreamsPerUser int `mapstructure:"max-streams-per-user"`
	// BodyReadTimeout cuts a request body (REST and S3 ports) that takes
	// longer than this to deliver each next 64 KiB (or its rest): a client
	// trickling bytes cannot hold a connection for ever.
	BodyReadTimeout time.Duration `mapstructure:"body-read-timeout"`
	// RESTOpen serves the REST API without the cluster token even when the
	// cluster has one (Alluxio's clients send none).
	RESTOpen bool          `mapstructure:"rest-open"`
	S3       ProxyS3Config `mapstructure:"s3"`
}

// ProxyS3Config configures the S3 gateway.
type ProxyS3Config struct {
	// Users maps an access key to its secret. A key not listed may use the
	// cluster token (security.token) as its secret; with neither a token
	// nor users, requests are not authenticated.
	Users           map[string]string `mapstructure:"users"`
	Region          string            `mapstructure:"region"`
	StagingDir      string            `mapstructure:"staging-dir"` // unused (metadata and uploads are in the FS master); kept so older configs load
	WriteType       string            `mapstructure:"write-type"`  // "": the FS master's default
	MultipartExpiry time.Duration     `mapstructure:"multipart-expiry"`
}

// ClientConfig is how CLI and SDK find the cluster.
type ClientConfig struct {
	Master    string        `mapstructure:"master"`     // FS master rpc address
	JobMaster string        `mapstructure:"job-master"` // comma-separated job master rpc addresses
	Timeout   time.Duration `mapstructure:"timeout"`
}

// Default returns the built-in defaults as key → value, the single source
// for viper's defaults and for configs/README.md.
func Default() map[string]any {
	return map[string]any{
		"home":                                       "./alluvium-data",
		"log.level":                                  "info",
		"log.format":                                 "console",
		"security.token":                             "",
		"security.token-file":                        "", // <home>/token
		"security.insecure":                          false,
		"security.users":                             map[string]string{},
		"security.groups":                            map[string]string{},
		"security.superuser":                         "", // the process's user
		"security.supergroup":                        "supergroup",
		"security.permissions":                       true,
		"security.tls.enabled":                       false,
		"security.tls.cert":                          "",
		"security.tls.key":                           "",
		"security.tls.client-ca":                     "",
		"security.tls.ca":                            "",
		"security.tls.client-cert":                   "",
		"security.tls.client-key":                    "",
		"security.tls.server-name":                   "",
		"limits.max-request-bytes":                   16 << 20,
		"process.gc-heap-floor":                      "128MiB",
		"fsmaster.path.max-length":                   4096,
		"fsmaster.path.max-depth":                    512,
		"fsmaster.max-expensive-calls":               64,
		"fsmaster.expensive-call-wait":               time.Second,
		"jobmaster.job.max-in-flight-per-user":       1000,
		"jobmaster.job.visible-to-all":               false,
		"fsmaster.host":                              "localhost",
		"fsmaster.bind-host":                         "127.0.0.1",
		"fsmaster.rpc-port":                          DefaultPortBase + offFSMasterRPC,
		"fsmaster.http-port":                         DefaultPortBase + offFSMasterHTTP,
		"fsmaster.ufs":                               "", // file://<home>/ufs
		"fsmaster.ufs-options":                       map[string]string{},
		"fsmaster.journal.type":                      "local",
		"fsmaster.journal.dir":                       "", // <home>/journal
		"fsmaster.raft.node-id":                      "", // host:raft-port
		"fsmaster.raft.port":                         DefaultPortBase - 1,
		"fsmaster.raft.dir":                          "", // <journal.dir>/raft
		"fsmaster.raft.peers":                        []string{},
		"fsmaster.raft.join":                         false,
		"fsmaster.raft.heartbeat-timeout":            500 * time.Millisecond,
		"fsmaster.raft.election-timeout":             500 * time.Millisecond,
		"fsmaster.raft.snapshot-threshold":           8192,
		"fsmaster.raft.snapshot-interval":            2 * time.Minute,
		"fsmaster.raft.trailing-logs":                10240,
		"fsmaster.journal.segment-entries":           int64(100000),
		"fsmaster.journal.checkpoint-period-entries": int64(1000000),
		"fsmaster.journal.max-batch-entries":         4096,
		"fsmaster.journal.max-linger":                time.Millisecond,
		"fsmaster.journal.writer-nice":               -10,
		"fsmaster.journal.checkpoint-poll-interval":  time.Second,
		"fsmaster.journal.checkpoints-retained":      2,
		"fsmaster.journal.checkpoint-timeout":        2 * time.Minute,
		"fsmaster.worker.timeout":                    DefaultWorkerTimeout,
		"fsmaster.worker.heartbeat-interval":         time.Second,
		"fsmaster.worker.max-heartbeats-per-second":  50.0,
		"fsmaster.user.block-size":                   int64(64 << 20),
		"fsmaster.user.write-type":                   "CACHE_THROUGH",
		"fsmaster.list.default-page-size":            1000,
		"fsmaster.list.max-page-size":                10000,
		"fsmaster.job-master":                        "localhost:20001",
		"fsmaster.persist.delay":                     time.Second,
		"fsmaster.ttl-check-interval":                time.Minute,
		"fsmaster.ufs-sync-interval":                 time.Duration(0),
		"fsmaster.ufs-watch.enabled":                 true,
		"fsmaster.ufs-watch.interval":                10 * time.Second,
		"fsmaster.ufs-watch.settle":                  time.Second,
		"fsmaster.ufs-watch.max-dirs":                10000,
		"fsmaster.multipart.max-staged-bytes":        int64(100 << 30),
		"fsmaster.persist.max-backoff":               10 * time.Minute,
		"fsmaster.persist.batch-size":                1000,
		"worker.role":                                "all",
		"worker.host":                                "localhost",
		"worker.bind-host":                           "127.0.0.1",
		"worker.rpc-port":                            29999,
		"worker.http-port":                           30000,
		"worker.master":                              "localhost:19998",
		"worker.dir":                                 "",      // <home>/worker
		"worker.tiers":                               []any{}, // empty: MEM 1GiB under /dev/shm, HDD 16GiB under worker.dir
		"worker.eviction":                            "lru",
		"worker.lease-timeout":                       5 * time.Minute,
		"worker.access-cache-ttl":                    10 * time.Second,
		"worker.chunk-size":                          int64(1 << 20),
		"worker.domain-socket":                       "", // <worker.dir>/worker.sock; "off": none
		"jobmaster.host":                             "localhost",
		"jobmaster.bind-host":                        "127.0.0.1",
		"jobmaster.rpc-port":                         DefaultPortBase + offJobMasterRPC,
		"jobmaster.http-port":                        DefaultPortBase + offJobMasterHTTP,
		"jobmaster.master":                           "localhost:19998",
		"jobmaster.raft.node-id":                     "",
		"jobmaster.raft.port":                        DefaultPortBase + offJobMasterRaft,
		"jobmaster.raft.dir":                         "", // <home>/jobmaster
		"jobmaster.raft.peers":                       []string{},
		"jobmaster.raft.join":                        false,
		"jobmaster.raft.heartbeat-timeout":           time.Second,
		"jobmaster.raft.election-timeout":            time.Second,
		"jobmaster.raft.snapshot-threshold":          8192,
		"jobmaster.raft.snapshot-interval":           2 * time.Minute,
		"jobmaster.raft.trailing-logs":               10240,
		"jobmaster.planner.batch-size":               1000,
		"jobmaster.planner.max-outstanding":          50000,
		"jobmaster.planner.concurrency":              4,
		"jobmaster.task.batch-max":                   8192,
		"jobmaster.job.gc-interval":                  time.Minute,
		"jobworker.queue-depth":                      0,
		"jobworker.remote-tasks":                     32,
		"jobworker.progress-interval":                time.Second,
		"jobmaster.worker.timeout":                   DefaultWorkerTimeout,
		"jobmaster.worker.heartbeat-interval":        time.Second,
		"jobmaster.worker.max-heartbeats-per-second": 50.0,
		"jobmaster.task.max-attempts":                3,
		"jobmaster.task.timeout":                     30 * time.Minute,
		"jobmaster.task.locality-wait":               3 * time.Second,
		"jobmaster.job.retention":                    24 * time.Hour,
		"jobmaster.job.capacity":                     100000,
		"jobworker.rpc-port":                         30001,
		"jobworker.job-master":                       "localhost:20001",
		"jobworker.threads":                          8,
		"jobworker.exec.allow":                       []string{},
		"plans.dir":                                  "", // <home>/plans
		"proxy.host":                                 "localhost",
		"proxy.bind-host":                            "127.0.0.1",
		"proxy.rest-port":                            39999,
		"proxy.s3-port":                              39998,
		"proxy.stream-timeout":                       10 * time.Minute,
		"proxy.max-streams-per-user":                 64,
		"proxy.body-read-timeout":                    30 * time.Second,
		"proxy.rest-open":                            false,
		"proxy.s3.users":                             map[string]string{},
		"proxy.s3.region":                            "us-east-1",
		"proxy.s3.staging-dir":                       "", // unused; accepted so older configs load
		"proxy.s3.write-type":                        "",
		"proxy.s3.multipart-expiry":                  24 * time.Hour,
		"console.enabled":                            true,
		"console.session-timeout":                    12 * time.Hour,
		"client.master":                              "localhost:19998",
		"client.job-master":                          "localhost:20001",
		"client.timeout":                             30 * time.Second,
	}
}

// Loader builds a Config from its layers. Flags are applied by the caller
// with Set after Load has read the file and the environment.
type Loader struct {
	v *viper.Viper
}

// NewLoader returns a loader with the defaults set and the environment bound:
// ALLUVIUM_FSMASTER_JOURNAL_DIR overrides fsmaster.journal.dir.
func NewLoader() *Loader {
	v := viper.New()
	for k, val := range Default() {
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix("ALLUVIUM")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	return &Loader{v: v}
}

// ReadFile merges a YAML config file over the defaults. A key the
// configuration does not have is refused (keys.go).
func (l *Loader) ReadFile(path string) error {
	if path == "" {
		return nil
	}
	if err := checkFile(path); err != nil {
		return err
	}
	l.v.SetConfigFile(path)
	if err := l.v.ReadInConfig(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Set overrides one key (used for flags).
func (l *Loader) Set(key string, value any) { l.v.Set(key, value) }

// SetPortBase moves every server port to an offset from base, as DESIGN.md's
// "Running a process" describes.
func (l *Loader) SetPortBase(base int) {
	l.v.Set("fsmaster.rpc-port", base+offFSMasterRPC)
	l.v.Set("fsmaster.http-port", base+offFSMasterHTTP)
	l.v.Set("fsmaster.raft.port", base+offFSMasterRaft)
	l.v.Set("jobmaster.rpc-port", base+offJobMasterRPC)
	l.v.Set("jobmaster.http-port", base+offJobMasterHTTP)
	l.v.Set("jobmaster.raft.port", base+offJobMasterRaft)
	l.v.Set("proxy.rest-port", base+offProxyREST)
	l.v.Set("proxy.s3-port", base+offProxyS3)
	rpc, http, job := WorkerPorts(base, 0)
	l.v.Set("worker.rpc-port", rpc)
	l.v.Set("worker.http-port", http)
	l.v.Set("jobworker.rpc-port", job)
	master := fmt.Sprintf("localhost:%d", base+offFSMasterRPC)
	jobMaster := fmt.Sprintf("localhost:%d", base+offJobMasterRPC)
	for _, k := range []string{"worker.master", "jobmaster.master", "client.master"} {
		l.v.Set(k, master)
	}
	for _, k := range []string{"jobworker.job-master", "client.job-master"} {
		l.v.Set(k, jobMaster)
	}
	// The FS master's job master may run under another base: an address
	// from the file or the environment stays.
	if !l.v.InConfig("fsmaster.job-master") && os.Getenv("ALLUVIUM_FSMASTER_JOB_MASTER") == "" {
		l.v.Set("fsmaster.job-master", jobMaster)
	}
}

// MaxLocalMasters bounds `alluvium local --masters`.
const MaxLocalMasters = 5

// LocalMasterPorts returns the rpc, http and raft ports of the i-th FS
// master of `alluvium local --masters N` under a port base: the first has
// the usual P, P+1, P+2; the others sit after the workers' ports, from
// P+180.
func LocalMasterPorts(base, i int) (rpc, http, raft int) {
	if i == 0 {
		return base + offFSMasterRPC, base + offFSMasterHTTP, base + offFSMasterRaft
	}
	p := base + offWorkerFirst + portsPerWorker*MaxLocalWorkers + 3*(i-1)
	return p, p + 1, p + 2
}

// WorkerPorts returns the rpc, http and job-worker rpc ports of the i-th
// worker under a port base.
func WorkerPorts(base, i int) (rpc, http, job int) {
	p := base + offWorkerFirst + portsPerWorker*i
	return p, p + 1, p + 2
}

// Load decodes the layers into a Config and fills the paths derived from home.
// An ALLUVIUM_* variable that sets no key is refused (keys.go), and so is a
// key the Config has no field for (inside a list, e.g. a tier's).
func (l *Loader) Load() (*Config, error) {
	if err := CheckEnv(os.Environ()); err != nil {
		return nil, err
	}
	var c Config
	hook := mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
		flattenStringMaps,
	)
	exact := func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true }
	if err := l.v.Unmarshal(&c, viper.DecodeHook(hook), exact); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.fill(); err != nil {
		return nil, err
	}
	return &c, nil
}

// flattenStringMaps decodes a map[string]string key (fsmaster.ufs-options,
// security.users) from a file whose entry names hold dots: viper splits
// `s3.endpoint: x` into s3: {endpoint: x}, and this joins the names back.
func flattenStringMaps(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[map[string]string]() || from.Kind() != reflect.Map {
		return data, nil
	}
	in, ok := data.(map[string]any)
	if !ok {
		return data, nil
	}
	out := map[string]string{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			if v == nil {
				v = ""
			}
			out[prefix+k] = fmt.Sprint(v)
		}
	}
	walk("", in)
	return out, nil
}

// Viper exposes the underlying viper for keys a role reads itself.
func (l *Loader) Viper() *viper.Viper { return l.v }

func (c *Config) fill() error {
	home, err := filepath.Abs(c.Home)
	if err != nil {
		return fmt.Errorf("config: home %q: %w", c.Home, err)
	}
	c.Home = home
	if c.Security.TokenFile == "" {
		c.Security.TokenFile = filepath.Join(home, "token")
	}
	if c.FSMaster.Journal.Dir == "" {
		c.FSMaster.Journal.Dir = filepath.Join(home, "journal")
	}
	if c.FSMaster.UFS == "" {
		c.FSMaster.UFS = "file://" + filepath.Join(home, "ufs")
	}
	if c.Worker.Dir == "" {
		c.Worker.Dir = filepath.Join(home, "worker")
	}
	if c.Plans.Dir == "" {
		c.Plans.Dir = filepath.Join(home, "plans")
	}
	if c.FSMaster.Raft.Dir == "" {
		c.FSMaster.Raft.Dir = filepath.Join(c.FSMaster.Journal.Dir, "raft")
	}
	if c.FSMaster.Raft.NodeID == "" {
		c.FSMaster.Raft.NodeID = fmt.Sprintf("%s:%d", c.FSMaster.Host, c.FSMaster.Raft.Port)
	}
	if c.JobMaster.Raft.Dir == "" {
		c.JobMaster.Raft.Dir = filepath.Join(home, "jobmaster")
	}
	if c.JobMaster.Raft.NodeID == "" {
		c.JobMaster.Raft.NodeID = fmt.Sprintf("%s:%d", c.JobMaster.Host, c.JobMaster.Raft.Port)
	}
	if len(c.Worker.Tiers) == 0 {
		c.Worker.Tiers = DefaultTiers(c.Worker.Dir, c.Worker.RPCPort)
	}
	if c.Security.Token == "" {
		if b, err := os.ReadFile(c.Security.TokenFile); err == nil {
			c.Security.Token = strings.TrimSpace(string(b))
		}
	}
	if c.Security.Superuser == "" {
		c.Security.Superuser = processUser()
	}
	return c.validate()
}

// processUser is the name of the user running this process.
func processUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "alluvium"
}

// DefaultTiers is a MEM tier under /dev/shm (when it exists) and an HDD tier
// under the worker's dir. The MEM dir's name is derived from the worker dir,
// so two clusters on one host never share (and never mistake) cached blocks.
func DefaultTiers(workerDir string, rpcPort int) []TierConfig {
	var tiers []TierConfig
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		tiers = append(tiers, TierConfig{Alias: "MEM", Path: fmt.Sprintf("%s%d", DefaultMemTierPrefix(workerDir), rpcPort), Quota: "1GiB"})
	}
	return append(tiers, TierConfig{Alias: "HDD", Path: filepath.Join(workerDir, "hdd"), Quota: "16GiB"})
}

// DefaultMemTierPrefix is the start of the default MEM tier's path of the
// worker whose dir is workerDir; the worker's RPC port completes it. It
// lives outside the worker's dir (RAM), so whoever throws a home away (a
// test) removes these too: a glob of the prefix finds them.
func DefaultMemTierPrefix(workerDir string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(workerDir))
	return fmt.Sprintf("/dev/shm/alluvium-%08x-", h.Sum32())
}

func (c *Config) validate() error {
	for _, p := range []struct {
		key  string
		port int
	}{
		{"fsmaster.rpc-port", c.FSMaster.RPCPort}, {"fsmaster.http-port", c.FSMaster.HTTPPort},
		{"fsmaster.raft.port", c.FSMaster.Raft.Port},
		{"jobmaster.rpc-port", c.JobMaster.RPCPort}, {"jobmaster.http-port", c.JobMaster.HTTPPort},
		{"jobmaster.raft.port", c.JobMaster.Raft.Port}, {"worker.rpc-port", c.Worker.RPCPort},
		{"worker.http-port", c.Worker.HTTPPort}, {"jobworker.rpc-port", c.JobWorker.RPCPort},
		{"proxy.rest-port", c.Proxy.RESTPort}, {"proxy.s3-port", c.Proxy.S3Port},
	} {
		if p.port < 0 || p.port > 65535 {
			return fmt.Errorf("config: %s = %d is not a port", p.key, p.port)
		}
	}
	for u, tok := range c.Security.Users {
		switch {
		case strings.TrimSpace(u) == "":
			return fmt.Errorf("config: security.users: empty user name")
		case len(tok) < 16:
			return fmt.Errorf("config: security.users.%s: token shorter than 16 characters", u)
		case c.Security.Token != "" && tok == c.Security.Token:
			return fmt.Errorf("config: security.users.%s: the cluster token cannot be a user's token", u)
		}
	}
	if (c.Security.TLS.ClientCert == "") != (c.Security.TLS.ClientKey == "") {
		return fmt.Errorf("config: security.tls.client-cert and security.tls.client-key go together")
	}
	if c.Limits.MaxRequestBytes < 1<<20 {
		return fmt.Errorf("config: limits.max-request-bytes = %d: want at least 1048576 (a block chunk must fit)", c.Limits.MaxRequestBytes)
	}
	floor, err := humanize.ParseBytes(c.Process.GCHeapFloor)
	if err != nil {
		return fmt.Errorf("config: process.gc-heap-floor: %w", err)
	}
	c.Process.gcHeapFloor = floor
	switch c.FSMaster.Journal.Type {
	case JournalLocal, JournalEmbedded:
	default:
		return fmt.Errorf("config: fsmaster.journal.type = %q: want %s or %s", c.FSMaster.Journal.Type, JournalLocal, JournalEmbedded)
	}
	if w := c.FSMaster.UFSWatch; w.Interval <= 0 || w.Settle < 0 || w.MaxDirs <= 0 {
		return fmt.Errorf("config: fsmaster.ufs-watch: interval %v, settle %v, max-dirs %d: want interval > 0, settle >= 0, max-dirs > 0",
			w.Interval, w.Settle, w.MaxDirs)
	}
	if c.JobMaster.Task.LocalityWait < 0 {
		return fmt.Errorf("config: jobmaster.task.locality-wait = %v: want >= 0 (0: an idle job worker steals a backlog at once)", c.JobMaster.Task.LocalityWait)
	}
	switch c.Log.Format {
	case "console", "json":
	default:
		return fmt.Errorf("config: log.format = %q: want console or json", c.Log.Format)
	}
	switch c.Worker.Role {
	case "all", "block", "job":
	default:
		return fmt.Errorf("config: worker.role = %q: want all, block or job", c.Worker.Role)
	}
	for i, t := range c.Worker.Tiers {
		if _, err := humanize.ParseBytes(t.Quota); err != nil {
			return fmt.Errorf("config: worker.tiers[%d].quota: %w", i, err)
		}
		switch t.Alias {
		case "MEM", "SSD", "HDD":
		default:
			return fmt.Errorf("config: worker.tiers[%d].alias = %q: want MEM, SSD or HDD", i, t.Alias)
		}
	}
	return nil
}
