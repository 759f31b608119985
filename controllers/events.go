package controllers

// Event reasons, in one table so that users can rely on them in `kubectl get events --field-selector
// reason=...`. Each value is its identifier without the Event prefix. Warning events are used only
// for failures a user has to act on.
const (
	EventImportStarted         = "ImportStarted"
	EventImportSucceeded       = "ImportSucceeded"
	EventImportFailed          = "ImportFailed"
	EventImportRetrying        = "ImportRetrying"
	EventImportSuperseded      = "ImportSuperseded"
	EventImportBlocked         = "ImportBlocked"
	EventRevisionReady         = "RevisionReady"
	EventRevisionDeleted       = "RevisionDeleted"
	EventRefreshScheduleFailed = "RefreshScheduleFailed"
	EventWaitingForInstances   = "WaitingForInstances"
	EventStaleChildren         = "StaleChildren"

	EventTemplateNotFound      = "TemplateNotFound"
	EventTemplateNotShared     = "TemplateNotShared"
	EventRevisionNotFound      = "RevisionNotFound"
	EventReady                 = "Ready"
	EventLoginFailed           = "LoginFailed"
	EventCredentialsChanged    = "CredentialsChanged"
	EventSecretNotOwned        = "SecretNotOwned"
	EventServiceTypeNotAllowed = "ServiceTypeNotAllowed"
	EventResetStarted          = "ResetStarted"
	EventIdle                  = "Idle"
	EventExpired               = "Expired"
	EventCANotUsable           = "CANotUsable"
	EventCertificateIssued     = "CertificateIssued"
	EventUserNotSupported      = "UserNotSupported"
	EventPoolMemberReplaced    = "PoolMemberReplaced"
	EventClaimed               = "Claimed"
	EventReplicaStarted        = "ReplicaStarted"
	EventReplicaReady          = "ReplicaReady"
	EventReplicaFailed         = "ReplicaFailed"
	EventNodeNotReady          = "NodeNotReady"
	EventNoReplicaReady        = "NoReplicaReady"
)
