package v1alpha1

// Labels and annotations the operator puts on, or reads from, the objects it manages.
const (
	// LabelTemplate names the DatabaseTemplate a child object belongs to.
	LabelTemplate = "myaas.io/template"
	// LabelInstance names the DatabaseInstance a child object belongs to.
	LabelInstance = "myaas.io/instance"
	// LabelRevision is the template revision a PVC, Job or VolumeSnapshot holds or was cloned from.
	LabelRevision = "myaas.io/revision"
	// LabelTemplateNamespace is the namespace of the template, on children of an instance that
	// clones a template of another namespace, and on the copies of its revisions.
	LabelTemplateNamespace = "myaas.io/template-namespace"
	// LabelSharedWith is the namespace a copy of a revision (VolumeSnapshotContent) was made for.
	LabelSharedWith = "myaas.io/shared-with"
	// LabelRole tells apart the kinds of children (import, refresh-request, template-data, instance-data…).
	LabelRole = "myaas.io/role"
	// LabelManagedBy, set to ManagedBy, is on every object the operator creates: the manager's
	// cache selects on it, so that it holds only its own objects, not every Secret and Pod of the
	// cluster.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "myaas"

	// AnnotationReset asks for an in-place reset: set it to a new value (a timestamp, say) and the
	// instance is recreated from the template's latest revision, keeping its name, Secret and Service.
	AnnotationReset = "myaas.io/reset"

	// LabelPool names the template whose warm pool a DatabaseInstance belongs, or belonged, to:
	// `kubectl get dbi -l myaas.io/pool=<template>` lists the pool's members.
	LabelPool = "myaas.io/pool"
	// LabelPoolState is PoolAvailable on an unclaimed member and PoolClaimed once an instance
	// has claimed it.
	LabelPoolState = "myaas.io/pool-state"
	// LabelClaimedByUID, on a claimed member, is the UID of the instance that claimed it: the
	// claim is found again even if the instance's status write was lost.
	LabelClaimedByUID = "myaas.io/claimed-by-uid"
	// AnnotationClaimedBy, on a claimed member, names the instance that claimed it: the member's
	// certificate is issued for that instance's Service too.
	AnnotationClaimedBy = "myaas.io/claimed-by"
	// AnnotationClaimedAt, on a claimed member, is when it was claimed (RFC 3339 with fractions):
	// the pool holds its refill back while claims come in a burst.
	AnnotationClaimedAt = "myaas.io/claimed-at"

	// LabelReplica marks the volume, Job and snapshot of a revision's copy on another node than
	// the first import's; its value is short for the node, which AnnotationNode names in full.
	LabelReplica = "myaas.io/replica"
	// AnnotationNode is the node a replica's objects, or an instance's clone, belong on.
	AnnotationNode = "myaas.io/node"
)

// Values of LabelPoolState.
const (
	PoolAvailable = "available"
	PoolClaimed   = "claimed"
)

// Values of LabelRole.
const (
	RoleTemplateData   = "template-data"
	RoleImport         = "import"
	RoleRefreshRequest = "refresh-request"
	RoleInstanceData   = "instance-data"
	RoleInstance       = "instance"
	// RoleCA marks the namespace's CA Secret, which issues the instances' server certificates.
	RoleCA = "ca"
	// RoleTLS marks an instance's certificate Secret.
	RoleTLS = "tls"
	// RoleSharedSnapshot marks the copies of a revision made in another namespace: a
	// VolumeSnapshot there and its pre-provisioned VolumeSnapshotContent.
	RoleSharedSnapshot = "shared-snapshot"
)

// Condition types shared by both kinds.
const (
	// ConditionReady is True when the object can be used: a template has a revision to clone, an
	// instance answers queries with its credentials.
	ConditionReady = "Ready"
)
