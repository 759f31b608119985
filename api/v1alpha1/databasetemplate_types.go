package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EngineType is the database server family.
// +kubebuilder:validation:Enum=mariadb;mysql;postgresql
type EngineType string

const (
	EngineMariaDB    EngineType = "mariadb"
	EngineMySQL      EngineType = "mysql"
	EnginePostgreSQL EngineType = "postgresql"
)

// EngineSpec selects the database server that imports the dump and serves the clones.
// +kubebuilder:validation:XValidation:rule="self.type == oldSelf.type",message="engine.type is immutable: create a new DatabaseTemplate to change engines"
type EngineSpec struct {
	// Type is the server family: mariadb, mysql or postgresql.
	// +required
	Type EngineType `json:"type"`

	// Version of the server, used to choose the default image (mariadb:<version>, mysql:<version>,
	// postgres:<version>; e.g. "11.4", "8.4", "17"). Defaults to the engine's current LTS or, for
	// PostgreSQL, its newest major version.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Version string `json:"version,omitempty"`

	// Image overrides the server image. It must contain the engine's server binaries; the operator
	// adds its own agent through an init container.
	// +optional
	Image string `json:"image,omitempty"`

	// Config holds server options for the import and for every instance, e.g.
	// {"max_connections": "500"}: my.cnf names without leading dashes for MariaDB and MySQL,
	// postgresql.conf names for PostgreSQL.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Config map[string]string `json:"config,omitempty"`
}

// SourceFormat says what a source holds.
// +kubebuilder:validation:Enum=sql;mariadb-backup
type SourceFormat string

const (
	SourceFormatSQL           SourceFormat = "sql"
	SourceFormatMariaDBBackup SourceFormat = "mariadb-backup"
)

// DumpSource says where the SQL dumps or the physical backup come from. Exactly one source must
// be set.
// +kubebuilder:validation:XValidation:rule="(has(self.persistentVolumeClaim) ? 1 : 0) + (has(self.http) ? 1 : 0) + (has(self.s3) ? 1 : 0) == 1",message="exactly one of source.persistentVolumeClaim, source.http or source.s3 must be set"
type DumpSource struct {
	// PersistentVolumeClaim holding dump files.
	// +optional
	PersistentVolumeClaim *PVCDumpSource `json:"persistentVolumeClaim,omitempty"`
	// HTTP downloads one dump over HTTP(S).
	// +optional
	HTTP *HTTPDumpSource `json:"http,omitempty"`
	// S3 reads one object, or every object under a prefix in name order, from S3-compatible storage.
	// +optional
	S3 *S3DumpSource `json:"s3,omitempty"`
	// Format of the source. Unset, the import tells by content: a physical backup is one
	// mariadb-backup or XtraBackup xbstream (its chunks start with "XBSTCK01"), a tar archive of a
	// backup directory, or a directory of the PVC holding xtrabackup_checkpoints or
	// mariadb_backup_checkpoints; the stream and the tar archive may be gzip or zstd compressed.
	// An HTTP or S3 file is looked into only when its name ends in .xb, .xbstream, .mbstream or
	// .tar (then maybe .gz or .zst), or when format is mariadb-backup.
	// A physical backup is extracted into the template volume, prepared (mariadb-backup --prepare)
	// unless it is already, and started once for spec.postImportSQL and to drop its accounts
	// (spec.import.keepAccounts are kept). The engine image must carry mariadb-backup and mbstream
	// (Debian's mariadb-backup package), and be of the backup's server release series or a later
	// one. Anything else is SQL. "sql" never looks for a backup; "mariadb-backup" fails the import
	// unless the source is one.
	// +optional
	Format SourceFormat `json:"format,omitempty"`
}

// PVCDumpSource reads dump files from a PVC in the template's namespace.
type PVCDumpSource struct {
	// ClaimName of the PVC, mounted read-only.
	// +required
	// +kubebuilder:validation:MinLength=1
	ClaimName string `json:"claimName"`
	// Path of the dump inside the volume, or a glob ("nightly/*.sql.gz"): several files load in
	// name order. Files may be .sql, .sql.gz or .sql.zst. A mysqldump or mariadb-dump file loads
	// its tables in parallel sessions, one per CPU of the import's limit. A directory written by
	// mydumper ("nightly/2026-11-26") loads as myloader does: schemas, then rows in parallel, then
	// routines, views and triggers. A physical backup is one file, or the path of its directory
	// (see format).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.contains('..')",message="path must be relative to the volume root and must not contain '..'"
	Path string `json:"path"`
}

// HTTPDumpSource downloads a dump.
// +kubebuilder:validation:XValidation:rule="!has(self.secretRef) || self.url.startsWith('https://') || (has(self.insecure) && self.insecure)",message="source.http.secretRef sends credentials: over a plain http:// URL they travel in clear text; use https:// or set source.http.insecure: true"
type HTTPDumpSource struct {
	// URL of a .sql, .sql.gz or .sql.zst file, or of a physical backup (see format). It must not carry credentials: a user name or
	// password in it would show in the import pod's arguments; put them in secretRef. Its query
	// string is redacted in every message.
	// +required
	// +kubebuilder:validation:Pattern=`^https?://.+`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^https?://[^/?#]*@')",message="source.http.url must not carry credentials (user:password@): put them in a Secret named by source.http.secretRef"
	URL string `json:"url"`
	// SecretRef names a Secret with `username` and `password` (basic auth) and/or `headers`
	// ("Name: value" lines, e.g. an Authorization header). They are sent to the URL's own host
	// only: a redirect to another host gets none of them.
	// +optional
	SecretRef *corev1.LocalObjectReference `json:"secretRef,omitempty"`
	// Insecure allows sending secretRef's credentials over plain http://.
	// +optional
	Insecure bool `json:"insecure,omitempty"`
}

// S3DumpSource reads from an S3-compatible object store.
// +kubebuilder:validation:XValidation:rule="has(self.key) != has(self.prefix)",message="exactly one of s3.key or s3.prefix must be set"
type S3DumpSource struct {
	// Endpoint, e.g. "s3.eu-west-1.amazonaws.com" or "minio.storage.svc:9000".
	// +required
	// +kubebuilder:validation:MinLength=1
	Endpoint string `json:"endpoint"`
	// Bucket name.
	// +required
	// +kubebuilder:validation:MinLength=1
	Bucket string `json:"bucket"`
	// Key of one object.
	// +optional
	Key string `json:"key,omitempty"`
	// Prefix: every object under it is loaded in name order.
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// Region of the bucket.
	// +optional
	Region string `json:"region,omitempty"`
	// Insecure uses plain HTTP to the endpoint.
	// +optional
	Insecure bool `json:"insecure,omitempty"`
	// CredentialsSecretRef names a Secret with `accessKeyID` and `secretAccessKey`.
	// +optional
	CredentialsSecretRef *corev1.LocalObjectReference `json:"credentialsSecretRef,omitempty"`
}

// PostImportSQL runs after the dump is loaded and before the snapshot is taken: the place to mask
// or anonymise data before developers see it.
type PostImportSQL struct {
	// Statements to run, in order.
	// +optional
	Statements []string `json:"statements,omitempty"`
	// ConfigMapRef names a key of a ConfigMap holding an SQL script, run after Statements.
	// +optional
	ConfigMapRef *corev1.ConfigMapKeySelector `json:"configMapRef,omitempty"`
}

// TemplateStorage sets where revisions live. The storage class must be backed by a CSI driver
// that clones snapshots copy-on-write (ZFS-LocalPV, TopoLVM, Ceph RBD, a cloud driver…).
type TemplateStorage struct {
	// StorageClassName for the template volumes and their clones. Defaults to the cluster's default class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
	// Size of each template volume. Clones get the snapshot's restore size.
	// +required
	// +kubebuilder:validation:XValidation:rule="quantity(self).isGreaterThan(quantity('0'))",message="storage.size must be greater than zero"
	Size resource.Quantity `json:"size"`
	// SnapshotClassName of the VolumeSnapshotClass used for revisions. Defaults to the class
	// marked default for the storage class's driver.
	// +optional
	SnapshotClassName *string `json:"snapshotClassName,omitempty"`
}

// RefreshSpec schedules new revisions.
type RefreshSpec struct {
	// Schedule in cron format ("0 3 * * *") or a macro such as "@daily".
	// +required
	// +kubebuilder:validation:Pattern=`^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every [0-9]+(ns|us|ms|s|m|h)+|(\S+\s+){4}\S+)$`
	Schedule string `json:"schedule"`
	// TimeZone for the schedule, e.g. "Europe/Madrid". Defaults to the controller manager's.
	// +optional
	TimeZone *string `json:"timeZone,omitempty"`
	// Suspend pauses scheduled refreshes; a refresh started by hand still runs.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// ImportSpec tunes the import Job.
type ImportSpec struct {
	// Resources of the import container. A larger memory limit gives a larger buffer pool.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// Timeout of one import attempt; the Job is stopped and the attempt reported as failed after it.
	// +optional
	// +kubebuilder:default="6h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// MaxAttempts of one import. An attempt stopped by something outside the data (the pod
	// evicted, preempted, OOM-killed, deleted or lost with its node, or a stalled source) is tried
	// again with backoff until this many attempts have run; a broken dump is never retried.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
	// SourceStallTimeout fails an attempt whose HTTP or S3 source sends nothing for this long.
	// +optional
	// +kubebuilder:default="2m"
	SourceStallTimeout *metav1.Duration `json:"sourceStallTimeout,omitempty"`
	// SnapshotTimeout bounds the wait for the revision's VolumeSnapshot to become ready. Errors
	// the snapshot reports before then are retried; after it the revision fails and the next
	// refresh goes ahead.
	// +optional
	// +kubebuilder:default="10m"
	SnapshotTimeout *metav1.Duration `json:"snapshotTimeout,omitempty"`
	// AllowMissingTrailer accepts dumps whose header names mysqldump or mariadb-dump but that do
	// not end with their "-- Dump completed" trailer: hand-edited SQL. Without it such a dump is
	// taken for a truncated one and fails the import. Only files whose first lines name one of
	// those two tools are checked: other SQL loads without the check. A mydumper directory is
	// checked by its metadata file, which mydumper finishes with "Finished dump at" last. A
	// compressed file cut short fails either way.
	// +optional
	AllowMissingTrailer bool `json:"allowMissingTrailer,omitempty"`
	// KeepFailedVolume keeps the half-loaded volume of a failed import and its Job (with the
	// pod's log), for debugging, until the next import starts. By default both are deleted as
	// soon as the failure is recorded in status.lastFailure.
	// +optional
	KeepFailedVolume bool `json:"keepFailedVolume,omitempty"`
	// KeepAccounts names accounts the dumps (or the post-import SQL) create that the template
	// keeps, as "user" (on every host) or "user@host" (host exactly as in the dump, e.g.
	// "reporting@%"). Every other account they create is dropped before the snapshot, so no
	// clone ever accepts a production password; root is only ever kept for the pod's socket.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=400
	// +kubebuilder:validation:XValidation:rule="self.all(p, p != 'root' && !p.startsWith('root@'))",message="keepAccounts must not name root: root logs in only inside the pod"
	KeepAccounts []string `json:"keepAccounts,omitempty"`
}

// DatabaseTemplateSpec defines a template.
// +kubebuilder:validation:XValidation:rule="!has(self.source.format) || self.source.format != 'mariadb-backup' || self.engine.type in ['mariadb', 'mysql']",message="source.format mariadb-backup needs engine.type mariadb (or mysql, with XtraBackup)"
type DatabaseTemplateSpec struct {
	// +required
	Engine EngineSpec `json:"engine"`
	// +required
	Source DumpSource `json:"source"`
	// +optional
	PostImportSQL *PostImportSQL `json:"postImportSQL,omitempty"`
	// +required
	Storage TemplateStorage `json:"storage"`
	// Refresh imports a new revision on a schedule, through the CronJob <template>-refresh.
	// `kubectl create job --from=cronjob/<template>-refresh <name>` starts one by hand.
	// +optional
	Refresh *RefreshSpec `json:"refresh,omitempty"`
	// RetainRevisions is how many of the newest revisions are kept. Older ones are deleted as soon
	// as no instance uses them.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	RetainRevisions int32 `json:"retainRevisions,omitempty"`
	// +optional
	Import ImportSpec `json:"import,omitempty"`
	// Sharing lets instances in other namespaces clone this template's revisions. Nothing is
	// shared unless it is set. Removing a namespace from it refuses new instances there; the
	// instances already cloned keep running until they are deleted.
	// +optional
	Sharing *SharingSpec `json:"sharing,omitempty"`
	// WarmPool keeps instances of the latest revision cloned, started and verified, so that a new
	// instance claims one in well under a second instead of cloning and starting its own.
	// +optional
	WarmPool *WarmPoolSpec `json:"warmPool,omitempty"`
	// Replicas puts each revision on several nodes, for storage whose clones stay on the node of
	// their snapshot (ZFS-LocalPV, TopoLVM, the local btrfs driver): the operator imports the dump
	// on each of those nodes, and instances spread over them. Storage whose volumes can be used
	// from any node (network storage) needs one copy: the operator tells the two apart from the
	// first import's volume, and keeps one copy there whatever this says.
	// +optional
	Replicas *ReplicaSpec `json:"replicas,omitempty"`
}

// ReplicaSpec says on which nodes a revision is kept.
// +kubebuilder:validation:XValidation:rule="has(self.nodes) || has(self.nodeSelector)",message="replicas needs nodes, nodeSelector or both"
type ReplicaSpec struct {
	// Nodes is how many nodes hold each revision, the first import's node included. Unset with a
	// nodeSelector: every matching node.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	Nodes *int32 `json:"nodes,omitempty"`
	// NodeSelector limits the nodes to those carrying these labels.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// WarmPoolSpec sizes a template's warm pool.
type WarmPoolSpec struct {
	// Size is how many unclaimed instances the operator keeps running. Each costs what an
	// instance with default resources costs (memory for its server), even when unused.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Size int32 `json:"size"`
	// Database and Username the members' credentials are for, as spec.database and spec.username
	// of an instance: only instances asking for the same claim a member. With PostgreSQL, set
	// Database to the dump's database.
	// +optional
	// +kubebuilder:default=app
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_$]{1,64}$`
	Database string `json:"database,omitempty"`
	// +optional
	// +kubebuilder:default=app
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.$-]{1,32}$`
	Username string `json:"username,omitempty"`
}

// WarmPoolStatus counts a template's pool members.
type WarmPoolStatus struct {
	// Size is the spec's pool size.
	Size int32 `json:"size"`
	// Ready members may be claimed now; Starting ones are being cloned, started or verified.
	Ready    int32 `json:"ready"`
	Starting int32 `json:"starting"`
	// Revision the pool's members are cloned from: the latest.
	// +optional
	Revision int32 `json:"revision,omitempty"`
}

// SharingSpec names the namespaces whose instances may clone a template; a namespace matching
// either field may. An instance there sees only its own clone, Secret and Service: nothing of the
// template's namespace (its source Secrets, its volumes) becomes readable from it.
type SharingSpec struct {
	// Namespaces allowed by name.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	Namespaces []string `json:"namespaces,omitempty"`
	// NamespaceSelector allows the namespaces whose labels match it, e.g. every namespace
	// labelled team=shop. An empty selector ({}) matches every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// TemplateRevision is one imported, snapshotted state of the template.
type TemplateRevision struct {
	// Revision number, increasing from 1.
	Revision int32 `json:"revision"`
	// SnapshotName is the VolumeSnapshot instances are cloned from.
	SnapshotName string `json:"snapshotName"`
	// ImportedAt is when the snapshot became ready to use.
	ImportedAt metav1.Time `json:"importedAt"`
	// ImportDuration from the import Job's start to the snapshot being ready.
	// +optional
	ImportDuration *metav1.Duration `json:"importDuration,omitempty"`
	// DumpBytes read from the source.
	// +optional
	DumpBytes int64 `json:"dumpBytes,omitempty"`
	// Size of the loaded data directory.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// RestoreSize of the snapshot: the size of every clone.
	// +optional
	RestoreSize *resource.Quantity `json:"restoreSize,omitempty"`
	// Instances cloned from this revision that still exist, in every namespace.
	Instances int32 `json:"instances"`
	// Namespaces those instances are in.
	// +optional
	Namespaces int32 `json:"namespaces,omitempty"`
	// AgentSHA256 of the agent the import left in the revision's volume: a manager with the same
	// binary starts instances with it, from their clone, instead of copying its own in.
	// +optional
	AgentSHA256 string `json:"agentSHA256,omitempty"`
	// Server is what the revision was imported with; its instances run the same, whatever the
	// template's spec says later.
	// +optional
	Server *RevisionServer `json:"server,omitempty"`
	// Replicas are the revision's copies: one per node with node-local storage, or a single one
	// without a node that serves every node. The revision's own snapshot (snapshotName) is the
	// first. Empty for revisions imported before replicas were recorded.
	// +optional
	// +listType=map
	// +listMapKey=node
	Replicas []RevisionReplica `json:"replicas,omitempty"`
}

// ReplicaState is where a revision's copy on one node stands.
type ReplicaState string

const (
	// ReplicaImporting: the dump is being loaded on the node, or the copy snapshotted.
	ReplicaImporting ReplicaState = "Importing"
	// ReplicaReady: instances may be cloned from it.
	ReplicaReady ReplicaState = "Ready"
	// ReplicaNodeNotReady: the copy exists, but its node is not Ready; instances go elsewhere.
	ReplicaNodeNotReady ReplicaState = "NodeNotReady"
	// ReplicaFailed: the copy could not be made; the next revision tries again.
	ReplicaFailed ReplicaState = "Failed"
)

// RevisionReplica is one copy of a revision.
type RevisionReplica struct {
	// Node holding the copy; empty when the copy's volume can be used from every node.
	Node string `json:"node"`
	// SnapshotName of the copy: instances placed on Node are cloned from it.
	SnapshotName string       `json:"snapshotName"`
	State        ReplicaState `json:"state"`
	// Message says why a copy is not Ready.
	// +optional
	Message string `json:"message,omitempty"`
}

// RevisionServer is the server a revision was imported with, and that its instances run.
type RevisionServer struct {
	// Image of the database server.
	Image string `json:"image"`
	// Config holds the template's server options at import time.
	// +optional
	Config map[string]string `json:"config,omitempty"`
	// AgentImage holds the agent the import ran, copied into instance pods that cannot run the
	// copy kept in the volume.
	// +optional
	AgentImage string `json:"agentImage,omitempty"`
}

// ImportPhase is the step an import is at.
type ImportPhase string

const (
	ImportPhaseProvisioning ImportPhase = "Provisioning"
	ImportPhaseLoading      ImportPhase = "Loading"
	ImportPhaseSnapshotting ImportPhase = "Snapshotting"
)

// ImportProgress is what the import agent last reported.
type ImportProgress struct {
	// Step of the agent: Initializing, Downloading, Loading, PostImport, ShuttingDown.
	// +optional
	Step string `json:"step,omitempty"`
	// BytesDone of the (compressed) source read so far.
	// +optional
	BytesDone int64 `json:"bytesDone,omitempty"`
	// BytesTotal of the source, 0 when unknown.
	// +optional
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// Percent done, e.g. "42%".
	// +optional
	Percent string `json:"percent,omitempty"`
	// ETA is the estimated time left, e.g. "3m20s".
	// +optional
	ETA string `json:"eta,omitempty"`
	// CurrentFile being loaded.
	// +optional
	CurrentFile string `json:"currentFile,omitempty"`
	// UpdatedAt is when the agent was last asked.
	// +optional
	UpdatedAt *metav1.Time `json:"updatedAt,omitempty"`
}

// CurrentImport is the revision being built.
type CurrentImport struct {
	// Revision this import will become.
	Revision int32 `json:"revision"`
	// Phase of the pipeline: Provisioning, Loading, Snapshotting.
	Phase ImportPhase `json:"phase"`
	// Trigger that started it: Created, SpecChanged or the refresh Job's name.
	Trigger string `json:"trigger"`
	// SpecHash of the import-relevant spec this import runs with.
	SpecHash string `json:"specHash"`
	// StartedAt is when the revision was allocated.
	StartedAt metav1.Time `json:"startedAt"`
	// Progress as reported by the agent.
	// +optional
	Progress *ImportProgress `json:"progress,omitempty"`
	// DumpBytes and DataSize are taken from the agent's report when the import Job has succeeded.
	// +optional
	DumpBytes int64 `json:"dumpBytes,omitempty"`
	// +optional
	DataSize *resource.Quantity `json:"dataSize,omitempty"`
	// AgentSHA256 of the agent the import left in the volume.
	// +optional
	AgentSHA256 string `json:"agentSHA256,omitempty"`
	// Server this import runs with, recorded when it starts.
	// +optional
	Server *RevisionServer `json:"server,omitempty"`
	// Attempt is the number of the running attempt, from 1.
	// +optional
	Attempt int32 `json:"attempt,omitempty"`
	// RetryAt is when the next attempt starts, after an attempt was interrupted.
	// +optional
	RetryAt *metav1.Time `json:"retryAt,omitempty"`
	// HoldReason and HoldMessage, when set, say what holds the import up: an image that cannot
	// be pulled, a snapshot error being retried, an attempt waiting for its retry.
	// +optional
	HoldReason string `json:"holdReason,omitempty"`
	// +optional
	HoldMessage string `json:"holdMessage,omitempty"`
	// LastAttemptFailure says why the previous attempt stopped.
	// +optional
	LastAttemptFailure string `json:"lastAttemptFailure,omitempty"`
	// SnapshotStartedAt is when the snapshot was requested: the snapshot timeout counts from it.
	// +optional
	SnapshotStartedAt *metav1.Time `json:"snapshotStartedAt,omitempty"`
}

// FailedImport records the last import that failed. Its Job and volume are deleted at once
// unless spec.import.keepFailedVolume is set.
type FailedImport struct {
	Revision int32 `json:"revision"`
	// Reason is the cause in one word, e.g. TruncatedDump, OOMKilled, SnapshotTimeout.
	// +optional
	Reason string `json:"reason,omitempty"`
	// SpecHash the failed import ran with: the same spec is not retried until a refresh is requested.
	SpecHash string `json:"specHash"`
	// Trigger of the failed import.
	Trigger string `json:"trigger"`
	// Message from the agent (file, line, statement) or from the snapshot controller.
	Message string `json:"message"`
	// FailedAt is when the failure was seen.
	FailedAt metav1.Time `json:"failedAt"`
}

// DatabaseTemplateStatus is the observed state of a template.
type DatabaseTemplateStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (a revision can be cloned), Importing, ImportFailed.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LatestRevision is the newest revision ready to be cloned; 0 when none is.
	// +optional
	LatestRevision int32 `json:"latestRevision,omitempty"`
	// NextRevision is the number the next import will get.
	// +optional
	NextRevision int32 `json:"nextRevision,omitempty"`
	// Revisions that exist, oldest first.
	// +optional
	// +listType=map
	// +listMapKey=revision
	Revisions []TemplateRevision `json:"revisions,omitempty"`
	// CurrentImport is the revision being built, if any.
	// +optional
	CurrentImport *CurrentImport `json:"currentImport,omitempty"`
	// LastFailure is the last import that failed, cleared when an import succeeds.
	// +optional
	LastFailure *FailedImport `json:"lastFailure,omitempty"`
	// LatestSpecHash is the import-relevant spec the latest revision was built from.
	// +optional
	LatestSpecHash string `json:"latestSpecHash,omitempty"`
	// HandledRefreshJob is the newest refresh-request Job already acted upon.
	// +optional
	HandledRefreshJob string `json:"handledRefreshJob,omitempty"`
	// Summary is the import's state in a few words for `kubectl get`'s Progress column, e.g.
	// "r3 Loading 42%" or "r4 failed"; currentImport.progress has the agent's figures.
	// +optional
	Summary string `json:"summary,omitempty"`
	// Usage says, per revision, how many instances in how many namespaces clone it, e.g.
	// "r2: 3 in 2 ns, r1: 1 in 1 ns"; revisions no instance uses are left out.
	// +optional
	Usage string `json:"usage,omitempty"`
	// LastImportTime is when the latest revision became ready.
	// +optional
	LastImportTime *metav1.Time `json:"lastImportTime,omitempty"`
	// WarmPool counts the warm pool's members, when spec.warmPool is set.
	// +optional
	WarmPool *WarmPoolStatus `json:"warmPool,omitempty"`
}

// DatabaseTemplate imports SQL dumps into a copy-on-write volume and snapshots it: each snapshot is
// a revision that DatabaseInstances clone in seconds.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dbt;dbtemplate,categories=myaas
// +kubebuilder:printcolumn:name="Engine",type=string,JSONPath=`.spec.engine.type`
// +kubebuilder:printcolumn:name="Latest",type=integer,JSONPath=`.status.latestRevision`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Progress",type=string,JSONPath=`.status.summary`
// +kubebuilder:printcolumn:name="Last Import",type=date,JSONPath=`.status.lastImportTime`
// +kubebuilder:printcolumn:name="Usage",type=string,JSONPath=`.status.usage`,priority=1
// +kubebuilder:printcolumn:name="Pool Ready",type=integer,JSONPath=`.status.warmPool.ready`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DatabaseTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DatabaseTemplateSpec   `json:"spec"`
	Status DatabaseTemplateStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// DatabaseTemplateList contains a list of DatabaseTemplate.
type DatabaseTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DatabaseTemplate `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DatabaseTemplate{}, &DatabaseTemplateList{})
}
