package controllers

// Event reasons, in one table so that users can rely on them in `kubectl get events --field-selector
// reason=...`. Warning events are used only for failures a user has to act on.
const (
	EventImportStarted   = "ImportStarted"
	EventImportSucceeded = "ImportSucceeded"
	EventImportFailed    = "ImportFailed"
	EventImportBlocked   = "ImportBlocked"
	EventRevisionReady   = "RevisionReady"
	EventRevisionDeleted = "RevisionDeleted"
	EventRefreshFailed   = "RefreshScheduleFailed"
	EventWaitingForUsers = "WaitingForInstances"

	EventTemplateMissing = "TemplateNotFound"
	EventRevisionMissing = "RevisionNotFound"
	EventCloning         = "Cloning"
	EventReady           = "Ready"
	EventLoginFailed     = "LoginFailed"
	EventResetStarted    = "ResetStarted"
	EventExpired         = "Expired"
)
