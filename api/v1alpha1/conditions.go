package v1alpha1

// DatabaseTemplate condition types (besides Ready).
const (
	// ConditionImporting is True while a revision is being built.
	ConditionImporting = "Importing"
	// ConditionImportFailed is True when the last import failed; the previous revision keeps serving.
	ConditionImportFailed = "ImportFailed"
)

// Reasons of DatabaseTemplate conditions. Each says what happened in words a user can act on.
const (
	ReasonRevisionAvailable     = "RevisionAvailable"
	ReasonNoRevisionYet         = "NoRevisionYet"
	ReasonProvisioning          = "Provisioning"
	ReasonLoading               = "Loading"
	ReasonSnapshotting          = "Snapshotting"
	ReasonIdle                  = "Idle"
	ReasonImportJobFailed       = "ImportJobFailed"
	ReasonSnapshotFailed        = "SnapshotFailed"
	ReasonSnapshotClassNotFound = "SnapshotClassNotFound"
	ReasonStorageClassNotFound  = "StorageClassNotFound"
	ReasonSourceClaimNotFound   = "SourceClaimNotFound"
	ReasonUnknownEngine         = "UnknownEngine"
	ReasonInvalidSchedule       = "InvalidSchedule"
	ReasonImportSucceeded       = "ImportSucceeded"
	ReasonDeleting              = "WaitingForInstances"
)

// Reasons of DatabaseInstance conditions.
const (
	ReasonTemplateNotFound    = "TemplateNotFound"
	ReasonTemplateNotReady    = "TemplateNotReady"
	ReasonRevisionNotFound    = "RevisionNotFound"
	ReasonCloning             = "Cloning"
	ReasonStarting            = "Starting"
	ReasonCredentialsVerified = "CredentialsVerified"
	ReasonLoginFailed         = "LoginFailed"
	ReasonResetting           = "Resetting"
	ReasonSuspended           = "Suspended"
)
