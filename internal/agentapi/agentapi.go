// Package agentapi is the contract between the operator and the agent it runs inside database
// pods: the agent's subcommands and flag names, the paths and ports of its pods, the environment it
// reads, the keys of the Secrets it mounts and the JSON it reports. The builders write pods with
// these names and the agent parses them with the same ones, so neither side can rename a part of
// the contract without the other.
package agentapi

// Subcommands of `myaas agent`.
const (
	CommandImport = "import"
	CommandStart  = "start"
	CommandProbe  = "probe"
)

// Paths inside the database pods.
const (
	// AgentBinDir holds the agent copied in from the manager image by the install init container.
	AgentBinDir = "/opt/myaas/bin"
	AgentBinary = AgentBinDir + "/myaas"
	// ManagerBinary is the binary's path in the manager image.
	ManagerBinary = "/myaas"
	// DataMountPath is where the template or clone volume is mounted; DataDir is the datadir in it.
	DataMountPath = "/var/lib/myaas"
	DataDir       = DataMountPath + "/data"
	// AgentInVolume is where the import leaves a copy of the agent, in the volume every clone
	// shares copy-on-write: a clone's pod can start without an init container.
	AgentInVolume = DataMountPath + "/.myaas/myaas"
	// RunDir is the pod's own scratch directory: socket, pid and init files, temporary tablespace.
	RunDir = "/run/myaas"
	// AccountsDroppedFile, in the datadir, says that the import dropped the dumps' accounts: an
	// instance cloned from a revision without it (imported by an older version) drops them at start.
	AccountsDroppedFile = "myaas-accounts-dropped"
	// SocketName is the server's socket in the run directory: the pod's own logins (its probe,
	// its agent) use it, so that the server tells them from clients, which come over TCP.
	SocketName = "mysqld.sock"
	// SourceDir is where a PVC source is mounted, read-only.
	SourceDir = "/source"
	// SourceAuthDir holds the HTTP source Secret's keys.
	SourceAuthDir = "/etc/myaas/source-auth"
	// PostImportDir holds the post-import script from the template's ConfigMap.
	PostImportDir  = "/etc/myaas/post-import"
	PostImportName = "post-import.sql"
	PostImportFile = PostImportDir + "/" + PostImportName
	// CredentialsDir holds the instance's Secret.
	CredentialsDir = "/etc/myaas/credentials"
	// TLSDir holds the instance's certificate Secret (kubernetes.io/tls keys: TLSCertKey,
	// TLSPrivateKeyKey, TLSCAKey). The server reads it at start.
	TLSDir = "/etc/myaas/tls"
	// AdminCredentialsDir holds the instance's admin Secret: root's password, for the pod's own
	// socket, and the operator's admin account.
	AdminCredentialsDir = "/etc/myaas/admin"
	// TerminationLog is where the agent leaves its Report for the operator.
	TerminationLog = "/dev/termination-log"
)

// The import agent serves its Progress on ProgressPort at ProgressPath.
const (
	ProgressPort = 8090
	ProgressPath = "/progress"
)

// An instance's agent answers the kubelet's readiness probe on ReadinessPort at ReadinessPath.
const (
	ReadinessPort     = 8091
	ReadinessPortName = "readiness"
	ReadinessPath     = "/readyz"
)

// Environment variables the agent reads.
const (
	// EnvMemoryLimit is the container's memory limit in bytes: the buffer pool is sized from it.
	EnvMemoryLimit = "MYAAS_MEMORY_LIMIT"
	// EnvCPULimit is the container's CPU limit in whole cores, rounded up: PostgreSQL's parallel
	// restore runs that many jobs.
	EnvCPULimit = "MYAAS_CPU_LIMIT"
	// EnvVolumeBytes is the template volume's declared size: quota-limited volumes show the whole
	// pool to statfs.
	EnvVolumeBytes = "MYAAS_VOLUME_BYTES"
	// EnvPostImportSQL holds the template's inline post-import statements.
	EnvPostImportSQL = "MYAAS_POST_IMPORT_SQL"
	// EnvImage is the import container's image, for messages about what it lacks.
	EnvImage = "MYAAS_IMAGE"
	// EnvS3AccessKeyID and EnvS3SecretAccessKey carry an S3 source's credentials.
	EnvS3AccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvS3SecretAccessKey = "AWS_SECRET_ACCESS_KEY"
)

// Flags of `agent import` (I), `agent start` (S) and `agent probe` (P).
const (
	FlagEngine              = "engine"                // I S P
	FlagDatadir             = "datadir"               // I S
	FlagRunDir              = "run-dir"               // I S
	FlagServerOption        = "server-option"         // I S, repeated name=value
	FlagCredentialsDir      = "credentials-dir"       // S P
	FlagAdminCredentialsDir = "admin-credentials-dir" // S
	FlagExtraPrivilege      = "extra-privilege"       // S, repeated
	FlagKeepAccount         = "keep-account"          // I, repeated user or user@host
	FlagServerID            = "server-id"             // S
	FlagPort                = "port"                  // S
	FlagReadinessPort       = "readiness-port"        // S
	FlagAddr                = "addr"                  // P
	FlagProgressAddr        = "progress-addr"         // I
	FlagKeepAgent           = "keep-agent"            // I
	FlagTerminationLog      = "termination-log"       // I
	FlagPostImportSQLFile   = "post-import-sql-file"  // I
	FlagSourceDir           = "source-dir"            // I
	FlagSourceGlob          = "source-glob"           // I
	FlagSourceURL           = "source-url"            // I
	FlagSourceAuthDir       = "source-auth-dir"       // I
	FlagSourceInsecure      = "source-insecure"       // I
	FlagSourceStallTimeout  = "source-stall-timeout"  // I
	FlagAllowMissingTrailer = "allow-missing-trailer" // I
	FlagSourceFormat        = "source-format"         // I, one of the SourceFormat values
	FlagS3Endpoint          = "s3-endpoint"           // I
	FlagS3Bucket            = "s3-bucket"             // I
	FlagS3Key               = "s3-key"                // I
	FlagS3Prefix            = "s3-prefix"             // I
	FlagS3Region            = "s3-region"             // I
	FlagS3Insecure          = "s3-insecure"           // I
	// FlagTLSDir turns on TLS with the certificate in that directory.
	FlagTLSDir = "tls-dir" // S
	// FlagRequireSecureTransport refuses TCP connections without TLS.
	FlagRequireSecureTransport = "require-secure-transport" // S
)

// Formats of a source (FlagSourceFormat). Auto tells them apart by content.
const (
	SourceFormatAuto          = "auto"
	SourceFormatSQL           = "sql"
	SourceFormatMariaDBBackup = "mariadb-backup"
)

// Flag renders --name=value.
func Flag(name, value string) string { return "--" + name + "=" + value }

// Keys of an instance's credentials Secret. The binding keys follow the Service Binding
// specification so that consumers (Spring Cloud Bindings, Quarkus, servicebinding.io runtimes)
// read them as they are; the agent reads username, password and database. Root's password is
// in the admin Secret only.
const (
	SecretKeyHost     = "host"
	SecretKeyPort     = "port"
	SecretKeyUsername = "username"
	SecretKeyPassword = "password"
	SecretKeyDatabase = "database"
	SecretKeyURI      = "uri"
	SecretKeyJDBCURI  = "jdbc-uri"
	SecretKeyDSN      = "dsn"
	SecretKeyType     = "type"
	SecretKeyProvider = "provider"
)

// Keys of an instance's admin Secret, which only the operator and the agent read: the operator's
// admin account (username, password) and root's password (root-password), which works only
// through the pod's own socket.
const (
	AdminKeyUsername     = "username"
	AdminKeyPassword     = "password"
	AdminKeyRootPassword = "root-password"
	// AdminUsername is the operator's admin account on every instance.
	AdminUsername = "myaas_admin"
)

// Keys of the certificate Secrets (type kubernetes.io/tls, as cert-manager writes them). The
// credentials Secret carries TLSCAKey too: the CA its clients verify the server with.
const (
	TLSCertKey       = "tls.crt"
	TLSPrivateKeyKey = "tls.key"
	TLSCAKey         = "ca.crt"
)

// Keys of a template's source Secrets.
const (
	// HTTP: basic auth and extra headers ("Name: value" lines).
	SourceKeyUsername = "username"
	SourceKeyPassword = "password"
	SourceKeyHeaders  = "headers"
	// S3.
	SourceKeyAccessKeyID     = "accessKeyID"
	SourceKeySecretAccessKey = "secretAccessKey"
)

// Progress is what the import agent serves on ProgressPath and writes to its log.
type Progress struct {
	// Step of the agent: one of the Step values.
	Step           string  `json:"step"`
	BytesDone      int64   `json:"bytesDone"`
	BytesTotal     int64   `json:"bytesTotal"`
	Percent        float64 `json:"percent"`
	BytesPerSecond float64 `json:"bytesPerSecond"`
	ETASeconds     float64 `json:"etaSeconds"`
	CurrentFile    string  `json:"currentFile"`
}

// Steps of an import, in order.
const (
	StepInitializing = "Initializing"
	StepLoading      = "Loading"
	// StepPreparing applies a physical backup's redo log (mariadb-backup --prepare).
	StepPreparing    = "Preparing"
	StepPostImport   = "PostImport"
	StepShuttingDown = "ShuttingDown"
	StepDone         = "Done"
	StepFailed       = "Failed"
)

// Outcome of an import.
type Outcome string

const (
	// OutcomeSucceeded: the datadir is loaded and the server shut down cleanly; snapshot it.
	OutcomeSucceeded Outcome = "Succeeded"
	// OutcomeFailed: the source or the SQL is wrong; running it again gives the same result.
	OutcomeFailed Outcome = "Failed"
	// OutcomeInterrupted: something outside the data stopped the import (a signal, a stalled
	// source); another attempt may succeed.
	OutcomeInterrupted Outcome = "Interrupted"
)

// Reasons of a failed or interrupted import, for conditions and events. The API's catalogue
// (api/v1alpha1, conditions.go) holds the same list, documented for users; this package does not
// import it, to keep the Kubernetes libraries out of the agent. TestReasonsAreTheAPIs keeps the
// two equal.
const (
	ReasonNoSourceFile        = "NoSourceFile"
	ReasonEmptySource         = "EmptySource"
	ReasonEmptyResponse       = "EmptyResponse"
	ReasonTruncatedDump       = "TruncatedDump"
	ReasonNoUserTables        = "NoUserTables"
	ReasonSQLError            = "SQLError"
	ReasonSourceError         = "SourceError"
	ReasonSourceStalled       = "SourceStalled"
	ReasonPostImportSQLFailed = "PostImportSQLFailed"
	ReasonServerError         = "ServerError"
	ReasonAgentStopped        = "AgentStopped"
	ReasonInvalidOptions      = "InvalidOptions"
	// Physical backups: the image lacks the backup tool, the backup is incomplete or not one,
	// it comes from a newer server than the image's, or --prepare failed.
	ReasonBackupToolMissing     = "BackupToolMissing"
	ReasonInvalidBackup         = "InvalidBackup"
	ReasonBackupFromNewerServer = "BackupFromNewerServer"
	ReasonBackupPrepareFailed   = "BackupPrepareFailed"
)

// MaxMessageBytes bounds a failure message: it goes into status and events, and a longer one
// would only carry more of what a user cannot act on.
const MaxMessageBytes = 1024

// Report is the one-line JSON the import agent writes to TerminationLog when it ends.
type Report struct {
	Outcome Outcome `json:"outcome"`
	// Reason and Message say why an import did not succeed; Message names the file, line, byte
	// offset and the start of the statement, never row data.
	Reason          string  `json:"reason,omitempty"`
	Message         string  `json:"message,omitempty"`
	BytesRead       int64   `json:"bytesRead,omitempty"`
	Files           int     `json:"files,omitempty"`
	DurationSeconds float64 `json:"durationSeconds,omitempty"`
	DatadirBytes    int64   `json:"datadirBytes,omitempty"`
	// AgentSHA256 of the agent kept in the template volume, for the operator to know whether
	// clones can run it.
	AgentSHA256 string `json:"agentSHA256,omitempty"`
	// AccountsDropped counts the accounts the dumps created that the import dropped.
	AccountsDropped int `json:"accountsDropped,omitempty"`
}
