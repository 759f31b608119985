package v1alpha1

// The catalogue of condition types and reasons. Each reason's value is its identifier without the
// Reason prefix, and says what happened in words a user can act on.

// DatabaseTemplate condition types (besides Ready).
const (
	// ConditionImporting is True while a revision is being built.
	ConditionImporting = "Importing"
	// ConditionImportFailed is True when the last import failed; the previous revision keeps serving.
	ConditionImportFailed = "ImportFailed"
	// ConditionRefreshScheduled is True when the refresh CronJob matches spec.refresh.
	ConditionRefreshScheduled = "RefreshScheduled"
)

// Reasons of DatabaseTemplate conditions.
const (
	// Ready.
	ReasonRevisionAvailable   = "RevisionAvailable"
	ReasonNoRevisionYet       = "NoRevisionYet"
	ReasonWaitingForInstances = "WaitingForInstances"

	// Importing.
	ReasonProvisioning          = "Provisioning"
	ReasonWaitingForVolume      = "WaitingForVolume"
	ReasonLoading               = "Loading"
	ReasonSnapshotting          = "Snapshotting"
	ReasonRetrying              = "Retrying"
	ReasonImagePullBackOff      = "ImagePullBackOff"
	ReasonIdle                  = "Idle"
	ReasonSnapshotClassNotFound = "SnapshotClassNotFound"
	ReasonStorageClassNotFound  = "StorageClassNotFound"
	ReasonSourceClaimNotFound   = "SourceClaimNotFound"
	ReasonUnknownEngine         = "UnknownEngine"
	ReasonImageNotAllowed       = "ImageNotAllowed"
	ReasonStaleChildren         = "StaleChildren"

	// ImportFailed, besides the import agent's reasons below.
	ReasonImportSucceeded = "ImportSucceeded"
	ReasonImportJobFailed = "ImportJobFailed"
	ReasonOOMKilled       = "OOMKilled"
	ReasonPodDisrupted    = "PodDisrupted"
	ReasonImagePullFailed = "ImagePullFailed"
	ReasonSnapshotTimeout = "SnapshotTimeout"
	ReasonSpecReverted    = "SpecReverted"

	// RefreshScheduled.
	ReasonScheduled       = "Scheduled"
	ReasonInvalidSchedule = "InvalidSchedule"
)

// Reasons the import agent reports when an import fails or is interrupted: the reason of the
// ImportFailed condition and of status.lastFailure. The agent (internal/agentapi) spells them
// the same; it does not import this package, to keep the Kubernetes libraries out of it.
const (
	// ReasonNoSourceFile: the source yields no file (no match in the volume, an empty S3 prefix,
	// an HTTP 404).
	ReasonNoSourceFile = "NoSourceFile"
	// ReasonEmptySource: a file of the source is empty (0 bytes), or decompresses to nothing.
	ReasonEmptySource = "EmptySource"
	// ReasonEmptyResponse: an HTTP source answered 200 with an empty body.
	ReasonEmptyResponse = "EmptyResponse"
	// ReasonTruncatedDump: a dump whose header names mysqldump or mariadb-dump lacks their
	// closing "-- Dump completed" line, or a compressed file ends early.
	ReasonTruncatedDump = "TruncatedDump"
	// ReasonNoUserTables: the load left no table outside the server's own schemas.
	ReasonNoUserTables = "NoUserTables"
	// ReasonSQLError: the server refused a statement of the dump; the message names the file,
	// line, byte offset and the start of the statement, without row values.
	ReasonSQLError = "SQLError"
	// ReasonSourceError: the source could not be read (refused, unreachable, not a valid
	// compressed stream).
	ReasonSourceError = "SourceError"
	// ReasonSourceStalled: an HTTP or S3 source sent nothing for the stall timeout; the import is
	// tried again.
	ReasonSourceStalled = "SourceStalled"
	// ReasonPostImportSQLFailed: the template's post-import SQL failed.
	ReasonPostImportSQLFailed = "PostImportSQLFailed"
	// ReasonServerError: the database server of the import failed to start or exited during the load.
	ReasonServerError = "ServerError"
	// ReasonAgentStopped: the import pod was stopped (SIGTERM) before it finished; the import is
	// tried again.
	ReasonAgentStopped = "AgentStopped"
	// ReasonInvalidOptions: the import Job gave the agent options it cannot use.
	ReasonInvalidOptions = "InvalidOptions"
	// ReasonBackupToolMissing: the source is a physical backup and the engine image lacks
	// mariadb-backup or mbstream (or XtraBackup's tools, for MySQL); the message names the image.
	ReasonBackupToolMissing = "BackupToolMissing"
	// ReasonInvalidBackup: a physical backup is cut short (mbstream fails, or its checkpoints
	// file is missing), is not a backup although spec.source.format says so, or is one of several
	// files.
	ReasonInvalidBackup = "InvalidBackup"
	// ReasonBackupFromNewerServer: a physical backup comes from a newer release series than the
	// image's server; the message names both versions.
	ReasonBackupFromNewerServer = "BackupFromNewerServer"
	// ReasonBackupPrepareFailed: mariadb-backup --prepare failed on the backup.
	ReasonBackupPrepareFailed = "BackupPrepareFailed"
)

// Reasons of DatabaseInstance conditions.
const (
	ReasonTemplateNotFound           = "TemplateNotFound"
	ReasonTemplateNotReady           = "TemplateNotReady"
	ReasonRevisionNotFound           = "RevisionNotFound"
	ReasonCloning                    = "Cloning"
	ReasonStarting                   = "Starting"
	ReasonCredentialsVerified        = "CredentialsVerified"
	ReasonLoginFailed                = "LoginFailed"
	ReasonApplyingCredentials        = "ApplyingCredentials"
	ReasonResetting                  = "Resetting"
	ReasonSuspended                  = "Suspended"
	ReasonSecretNotOwned             = "SecretNotOwned"
	ReasonWaitingForPreviousInstance = "WaitingForPreviousInstance"
	ReasonServiceTypeNotAllowed      = "ServiceTypeNotAllowed"
	// ReasonCANotUsable: the namespace's CA Secret is not the operator's, or holds no valid CA.
	ReasonCANotUsable = "CANotUsable"
	// ReasonWaitingForCertificate: cert-manager has not yet written the instance's certificate.
	ReasonWaitingForCertificate    = "WaitingForCertificate"
	ReasonTemplateNotShared        = "TemplateNotShared"
	ReasonWaitingForSharedSnapshot = "WaitingForSharedSnapshot"
	// ReasonUserNotSupported: spec.username or spec.extraPrivileges are not for the template's engine.
	ReasonUserNotSupported = "UserNotSupported"
	// ReasonNodeNotReady: the node the instance's data lives on is not Ready; a reset re-creates
	// the instance on a healthy node.
	ReasonNodeNotReady = "NodeNotReady"
	// ReasonNoReplicaReady: no node holding the revision is Ready to take the instance.
	ReasonNoReplicaReady = "NoReplicaReady"
)
