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

	// ImportFailed; the agent's own reasons (TruncatedDump, SQLError, …) are used as they are.
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
)
