package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TemplateReference names a DatabaseTemplate, in the instance's namespace unless Namespace says
// otherwise.
type TemplateReference struct {
	// Name of the DatabaseTemplate.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Namespace of the DatabaseTemplate; the instance's own when empty. A template in another
	// namespace must share itself with the instance's namespace (its spec.sharing).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
}

// DatabaseInstanceSpec defines an instance.
// +kubebuilder:validation:XValidation:rule="!(has(self.ttl) && has(self.expiresAt))",message="set at most one of ttl and expiresAt"
// +kubebuilder:validation:XValidation:rule="has(oldSelf.revision) || !has(self.revision)",message="revision cannot be added after creation: use the myaas.io/reset annotation to move to the latest revision"
type DatabaseInstanceSpec struct {
	// TemplateRef is the template to clone. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="templateRef is immutable: create a new DatabaseInstance to use another template"
	TemplateRef TemplateReference `json:"templateRef"`

	// Revision of the template to clone. Defaults to the latest revision at creation time; the
	// chosen revision is then pinned in status.revision until a reset.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="revision is immutable: use the myaas.io/reset annotation to move to the latest revision"
	Revision *int32 `json:"revision,omitempty"`

	// TTL after which the instance is deleted, counted from its creation (e.g. "8h").
	// +optional
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// ExpiresAt is when the instance is deleted.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// Resources of the database container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// ServiceType of the instance's Service.
	// +optional
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`

	// Database the credentials are for; created if the template has no such database.
	// +optional
	// +kubebuilder:default=app
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_$]{1,64}$`
	Database string `json:"database,omitempty"`

	// Username of the application user.
	// +optional
	// +kubebuilder:default=app
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.$-]{1,32}$`
	// +kubebuilder:validation:XValidation:rule="self != 'root'",message="username must not be root: root logs in only inside the instance's pod"
	// +kubebuilder:validation:XValidation:rule="self != 'myaas_admin'",message="username must not be myaas_admin: that is the operator's own account"
	Username string `json:"username,omitempty"`

	// ExtraPrivileges are granted to the application user on *.*, beyond what it holds on its
	// database and the template's databases (every privilege a developer needs on a schema:
	// DDL, DML, views, routines, triggers, events, temporary tables, locks). For teams that
	// need more, e.g. PROCESS or SHOW DATABASES; on PostgreSQL, e.g. CREATEDB or
	// pg_read_all_data. Changing them restarts the server.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	ExtraPrivileges []Privilege `json:"extraPrivileges,omitempty"`

	// Suspend stops the server (scales to zero) and keeps the data.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// Idle suspends or deletes the instance once no client has had a session on it for a while.
	// +optional
	Idle *IdleSpec `json:"idle,omitempty"`

	// TLS says who issues the server's certificate. The server always speaks TLS; by default the
	// operator's CA of the namespace (Secret myaas-ca) issues it.
	// +optional
	TLS *InstanceTLS `json:"tls,omitempty"`

	// RequireSecureTransport refuses client connections without TLS. Changing it restarts the server.
	// +optional
	RequireSecureTransport bool `json:"requireSecureTransport,omitempty"`

	// Network says who may connect to the server besides the defaults.
	// +optional
	Network *NetworkSpec `json:"network,omitempty"`
}

// NetworkSpec widens the NetworkPolicy the operator keeps for each instance (named after it). By
// default only pods in the instance's own namespace, and the operator's pods, may open a
// connection to the server's port; everything else is dropped where the cluster's network plugin
// enforces NetworkPolicies.
type NetworkSpec struct {
	// AllowFrom adds sources, written as the `from` of a NetworkPolicy ingress rule, that may
	// connect to the server's port. A namespaceSelector lets other namespaces in (e.g.
	// `{namespaceSelector: {matchLabels: {team: shop}}}`); an ipBlock lets in clients outside the
	// cluster, which a NodePort or LoadBalancer Service needs, as their traffic keeps its source
	// address (`{ipBlock: {cidr: 10.8.0.0/16}}`).
	// +optional
	// +listType=atomic
	AllowFrom []networkingv1.NetworkPolicyPeer `json:"allowFrom,omitempty"`
}

// InstanceTLS configures the instance's server certificate.
type InstanceTLS struct {
	// IssuerRef names a cert-manager Issuer or ClusterIssuer: the operator then asks cert-manager
	// for the certificate (a Certificate named <instance>-tls) instead of issuing it itself.
	// Immutable.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="issuerRef is immutable: create a new DatabaseInstance to use another issuer"
	IssuerRef *IssuerReference `json:"issuerRef,omitempty"`
}

// IssuerReference names a cert-manager issuer.
type IssuerReference struct {
	// Name of the issuer.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Kind: Issuer (in the instance's namespace, the default) or ClusterIssuer.
	// +optional
	// +kubebuilder:default=Issuer
	// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
	Kind string `json:"kind,omitempty"`
}

// Privilege is a server privilege: on MariaDB and MySQL, one both know that applies on *.*; on
// PostgreSQL, a role attribute (CREATEDB, REPLICATION, BYPASSRLS) or a predefined role the
// application role is made a member of (pg_monitor, pg_read_all_data, …). The operator refuses
// an instance asking for a privilege its template's engine does not have.
// +kubebuilder:validation:Enum=SELECT;INSERT;UPDATE;DELETE;CREATE;DROP;RELOAD;SHUTDOWN;PROCESS;FILE;REFERENCES;INDEX;ALTER;SHOW DATABASES;SUPER;CREATE TEMPORARY TABLES;LOCK TABLES;EXECUTE;REPLICATION SLAVE;REPLICATION CLIENT;CREATE VIEW;SHOW VIEW;CREATE ROUTINE;ALTER ROUTINE;CREATE USER;EVENT;TRIGGER;CREATE TABLESPACE;GRANT OPTION;CREATEDB;REPLICATION;BYPASSRLS;pg_monitor;pg_read_all_data;pg_write_all_data;pg_read_all_settings;pg_read_all_stats;pg_signal_backend
type Privilege string

// IdleAction is what happens to an idle instance.
// +kubebuilder:validation:Enum=Suspend;Delete
type IdleAction string

const (
	// IdleSuspend stops the server and keeps the data: `kubectl myaas connect` resumes it.
	IdleSuspend IdleAction = "Suspend"
	// IdleDelete deletes the instance, as an expired TTL does.
	IdleDelete IdleAction = "Delete"
)

// IdleSpec says when an instance counts as idle and what then happens to it.
type IdleSpec struct {
	// After is how long the server may go without a client session (the operator's own logins
	// and the pod's probe do not count) before Action is taken.
	// +required
	After metav1.Duration `json:"after"`
	// Action: Suspend (the default) or Delete.
	// +optional
	// +kubebuilder:default=Suspend
	Action IdleAction `json:"action,omitempty"`
}

// InstancePhase summarises an instance's state for `kubectl get`.
type InstancePhase string

const (
	InstancePending   InstancePhase = "Pending"
	InstanceCloning   InstancePhase = "Cloning"
	InstanceStarting  InstancePhase = "Starting"
	InstanceReady     InstancePhase = "Ready"
	InstanceResetting InstancePhase = "Resetting"
	InstanceSuspended InstancePhase = "Suspended"
	InstanceFailed    InstancePhase = "Failed"
)

// Endpoint is where the database listens.
type Endpoint struct {
	Host string `json:"host"`
	Port int32  `json:"port"`
}

// DatabaseInstanceStatus is the observed state of an instance.
type DatabaseInstanceStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready is True once the operator has logged in with the Secret's credentials.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Phase summarises the state.
	// +optional
	Phase InstancePhase `json:"phase,omitempty"`
	// Revision of the template this instance was cloned from.
	// +optional
	Revision int32 `json:"revision,omitempty"`
	// Node the instance's clone, and so its server, lives on: a node holding a ready replica of
	// its revision, or empty when the revision's storage serves every node.
	// +optional
	Node string `json:"node,omitempty"`
	// SnapshotName the data volume was cloned from.
	// +optional
	SnapshotName string `json:"snapshotName,omitempty"`
	// Endpoint of the Service.
	// +optional
	Endpoint *Endpoint `json:"endpoint,omitempty"`
	// SecretName holds host, port, username, password, database, uri, jdbc-uri and dsn.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// ExpiresAt is when the instance will be deleted.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// ProvisioningStartedAt is when the current data volume was requested (creation or reset).
	// +optional
	ProvisioningStartedAt *metav1.Time `json:"provisioningStartedAt,omitempty"`
	// ReadyAt is when the credentials were first verified for the current data volume.
	// +optional
	ReadyAt *metav1.Time `json:"readyAt,omitempty"`
	// TimeToReady is ReadyAt minus ProvisioningStartedAt.
	// +optional
	TimeToReady *metav1.Duration `json:"timeToReady,omitempty"`
	// HandledReset is the value of the myaas.io/reset annotation last acted upon.
	// +optional
	HandledReset string `json:"handledReset,omitempty"`
	// Resets counts in-place resets; it names the data volume so that a reset never adopts the old one.
	// +optional
	Resets int32 `json:"resets,omitempty"`
	// LastActiveAt is when a client last had a session on the server, as seen by the operator
	// (with spec.idle set), or when the server last became Ready.
	// +optional
	LastActiveAt *metav1.Time `json:"lastActiveAt,omitempty"`
	// AgentSHA256 of the agent the instance's pod runs, fixed when its data volume was cloned.
	// +optional
	AgentSHA256 string `json:"agentSHA256,omitempty"`
	// Agent is Current when the pod runs the operator's own agent, Outdated when it runs an
	// older one: an operator upgrade restarts no instance, a reset moves it to the current agent.
	// +optional
	Agent AgentState `json:"agent,omitempty"`
	// Provisioning says how the instance got its server: claimed from the template's warm pool,
	// or cloned and started for it (and why, when the template has a pool).
	// +optional
	Provisioning *Provisioning `json:"provisioning,omitempty"`
}

// ServerName is the instance whose StatefulSet runs this instance's server, and whose pod is
// <ServerName>-0: the claimed warm pool member, or the instance itself.
func (i *DatabaseInstance) ServerName() string {
	if p := i.Status.Provisioning; p != nil && p.PoolMember != "" {
		return p.PoolMember
	}
	return i.Name
}

// DefaultUsername and DefaultDatabase are what spec.username and spec.database default to.
const (
	DefaultUsername = "app"
	DefaultDatabase = "app"
)

// ProvisioningPath is how an instance got its server.
// +kubebuilder:validation:Enum=WarmPool;Cold
type ProvisioningPath string

const (
	// ProvisionedFromPool: a running, verified member of the template's warm pool was claimed.
	ProvisionedFromPool ProvisioningPath = "WarmPool"
	// ProvisionedCold: the revision was cloned and a server started for this instance.
	ProvisionedCold ProvisioningPath = "Cold"
)

// Provisioning records the path an instance's current server came by.
type Provisioning struct {
	// Path: WarmPool or Cold.
	Path ProvisioningPath `json:"path"`
	// Reason the pool was not used, when the template has one.
	// +optional
	Reason string `json:"reason,omitempty"`
	// PoolMember is the claimed pool member (a DatabaseInstance the instance owns) whose server
	// this instance's Service and Secret lead to.
	// +optional
	PoolMember string `json:"poolMember,omitempty"`
}

// AgentState tells whether an instance runs the operator's current agent.
// +kubebuilder:validation:Enum=Current;Outdated
type AgentState string

const (
	AgentCurrent  AgentState = "Current"
	AgentOutdated AgentState = "Outdated"
)

// DatabaseInstance is a ready database cloned from a DatabaseTemplate revision, with its own
// credentials, Service and optional TTL.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dbi;dbinstance,categories=myaas
// +kubebuilder:printcolumn:name="Template",type=string,JSONPath=`.spec.templateRef.name`
// +kubebuilder:printcolumn:name="Template Namespace",type=string,JSONPath=`.spec.templateRef.namespace`,priority=1
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.revision`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint.host`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Agent",type=string,JSONPath=`.status.agent`
// +kubebuilder:printcolumn:name="Path",type=string,JSONPath=`.status.provisioning.path`,priority=1
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.node`,priority=1
// +kubebuilder:printcolumn:name="Last Active",type=date,JSONPath=`.status.lastActiveAt`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DatabaseInstance struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DatabaseInstanceSpec   `json:"spec"`
	Status DatabaseInstanceStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// DatabaseInstanceList contains a list of DatabaseInstance.
type DatabaseInstanceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DatabaseInstance `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DatabaseInstance{}, &DatabaseInstanceList{})
}
