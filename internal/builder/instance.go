package builder

import (
	"fmt"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// InstanceLabels mark every child of an instance.
func InstanceLabels(inst *myaasv1.DatabaseInstance) map[string]string {
	l := map[string]string{
		myaasv1.LabelManagedBy: myaasv1.ManagedBy,
		myaasv1.LabelInstance:  inst.Name,
		myaasv1.LabelTemplate:  inst.Spec.TemplateRef.Name,
		myaasv1.LabelRole:      myaasv1.RoleInstance,
	}
	// Only on instances of another namespace's template: the children of the others keep the
	// labels they were made with, and a template's own namespace is the default.
	if inst.CrossNamespace() {
		l[myaasv1.LabelTemplateNamespace] = inst.TemplateNamespace()
	}
	return l
}

// selectorLabels select the instance's pod; they never change, as a StatefulSet selector must not.
func selectorLabels(inst *myaasv1.DatabaseInstance) map[string]string {
	return map[string]string{myaasv1.LabelInstance: inst.Name}
}

func instanceOwner(inst *myaasv1.DatabaseInstance) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(inst, myaasv1.GroupVersion.WithKind("DatabaseInstance"))}
}

// ServiceHost is the in-cluster DNS name of the instance's Service.
func ServiceHost(inst *myaasv1.DatabaseInstance) string {
	return fmt.Sprintf("%s.%s.svc", inst.Name, inst.Namespace)
}

// Passwords are the generated secrets of one instance's user.
type Passwords struct {
	Password string
}

// CredentialsSecret holds everything a client needs to connect to the instance.
func CredentialsSecret(inst *myaasv1.DatabaseInstance, eng engine.Engine, creds Passwords) *corev1.Secret {
	host, port := ServiceHost(inst), eng.Port()
	data := eng.ConnectionDetails(engine.Connection{
		Host: host, Port: port, Username: inst.Spec.Username, Password: creds.Password, Database: inst.Spec.Database,
	})
	data[agentapi.SecretKeyHost] = host
	data[agentapi.SecretKeyPort] = strconv.Itoa(int(port))
	data[agentapi.SecretKeyUsername] = inst.Spec.Username
	data[agentapi.SecretKeyPassword] = creds.Password
	data[agentapi.SecretKeyDatabase] = inst.Spec.Database
	data[agentapi.SecretKeyProvider] = "myaas"
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            CredentialsSecretName(inst.Name),
			Namespace:       inst.Namespace,
			Labels:          InstanceLabels(inst),
			OwnerReferences: instanceOwner(inst),
		},
		Type:       corev1.SecretType(eng.BindingType()),
		StringData: data,
	}
}

// AdminPasswords are the instance's passwords the operator keeps to itself.
type AdminPasswords struct {
	// Password of the operator's admin account (agentapi.AdminUsername).
	Password string
	// RootPassword of root, which logs in only through the pod's own socket.
	RootPassword string
}

// AdminSecret holds the passwords of root and of the operator's admin account, read by the agent
// in the pod and by the operator's idle check; never by the application.
func AdminSecret(inst *myaasv1.DatabaseInstance, p AdminPasswords) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            AdminSecretName(inst.Name),
			Namespace:       inst.Namespace,
			Labels:          InstanceLabels(inst),
			OwnerReferences: instanceOwner(inst),
		},
		Type: corev1.SecretTypeOpaque,
		StringData: map[string]string{
			agentapi.AdminKeyUsername:     agentapi.AdminUsername,
			agentapi.AdminKeyPassword:     p.Password,
			agentapi.AdminKeyRootPassword: p.RootPassword,
		},
	}
}

// DatabaseContainer is the name of the container running the server in an instance's pod.
const DatabaseContainer = "database"

// InstanceService exposes the instance's server.
func InstanceService(inst *myaasv1.DatabaseInstance, eng engine.Engine) *corev1.Service {
	return serviceTo(inst, selectorLabels(inst), eng)
}

// ClaimedInstanceService is the Service of an instance that claimed a warm pool member: the
// instance's own name, labels and owner, leading to the member's pod.
func ClaimedInstanceService(inst, member *myaasv1.DatabaseInstance, eng engine.Engine) *corev1.Service {
	return serviceTo(inst, selectorLabels(member), eng)
}

// serviceTo is inst's Service, leading to the pod that selector picks.
func serviceTo(inst *myaasv1.DatabaseInstance, selector map[string]string, eng engine.Engine) *corev1.Service {
	svcType := inst.Spec.ServiceType
	if svcType == "" {
		svcType = corev1.ServiceTypeClusterIP
	}
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            inst.Name,
			Namespace:       inst.Namespace,
			Labels:          InstanceLabels(inst),
			OwnerReferences: instanceOwner(inst),
		},
		Spec: corev1.ServiceSpec{
			Type:     svcType,
			Selector: selector,
			// The instance's Ready condition, set once the operator has logged in, is the gate
			// clients wait for; it may come before the kubelet's next probe marks the pod Ready.
			PublishNotReadyAddresses: true,
			Ports: []corev1.ServicePort{{
				Name: eng.PortName(), Port: eng.Port(), TargetPort: intstr.FromString(eng.PortName()), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

// StatefulSetParams is what an instance's StatefulSet is built from besides the instance itself.
type StatefulSetParams struct {
	Engine       engine.Engine
	Image        string
	AgentImage   string
	ServerConfig map[string]string
	// Revision the data volume is cloned from.
	Revision int32
	// SnapshotName and RestoreSize of that revision: the clone must ask for exactly the snapshot's
	// size, as some drivers (ZFS-LocalPV) refuse any other.
	SnapshotName     string
	RestoreSize      resource.Quantity
	StorageClassName *string
	// NodeAffinity copied from the template volume's PV: node-local drivers can only clone on the
	// node that holds the snapshot.
	NodeAffinity *corev1.NodeAffinity
	// AgentInVolume: the revision's volume holds the agent of AgentImage, so the pod runs it from
	// its clone. Without an init container the server starts a kubelet sync loop earlier.
	AgentInVolume bool
	// Node holding the copy of the revision the clone is made from: the clone is asked for there
	// and the pod pinned there. Empty when the revision's storage serves every node: the pods of
	// a template's instances are then spread over the nodes.
	Node string
}

// InstanceStatefulSet runs the instance's server on a volume cloned from the revision's snapshot.
func InstanceStatefulSet(inst *myaasv1.DatabaseInstance, p StatefulSetParams) *appsv1.StatefulSet {
	labels := InstanceLabels(inst)
	podLabels := mergeLabels(labels, map[string]string{myaasv1.LabelRevision: strconv.Itoa(int(p.Revision))})
	claimTemplate := instanceClaimTemplate(inst, p)
	agent := agentapi.AgentBinary
	initContainers := []corev1.Container{installContainer(p.AgentImage)}
	mounts := []corev1.VolumeMount{
		{Name: claimTemplate.Name, MountPath: agentapi.DataMountPath},
		{Name: volumeRun, MountPath: agentapi.RunDir},
		{Name: volumeBin, MountPath: agentapi.AgentBinDir, ReadOnly: true},
		{Name: volumeCreds, MountPath: agentapi.CredentialsDir, ReadOnly: true},
		{Name: volumeAdminCreds, MountPath: agentapi.AdminCredentialsDir, ReadOnly: true},
	}
	volumes := []corev1.Volume{
		emptyDirVolume(volumeRun),
		emptyDirVolume(volumeBin),
		{Name: volumeCreds, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: CredentialsSecretName(inst.Name), DefaultMode: ptr.To[int32](0o440),
		}}},
		{Name: volumeAdminCreds, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: AdminSecretName(inst.Name), DefaultMode: ptr.To[int32](0o440),
		}}},
	}
	tlsVol, tlsMount := tlsVolume(inst)
	volumes, mounts = append(volumes, tlsVol), append(mounts, tlsMount)
	if p.AgentInVolume {
		agent, initContainers = agentapi.AgentInVolume, nil
		mounts = slices.DeleteFunc(mounts, func(m corev1.VolumeMount) bool { return m.Name == volumeBin })
		volumes = slices.DeleteFunc(volumes, func(v corev1.Volume) bool { return v.Name == volumeBin })
	}
	replicas := int32(1)
	if inst.Spec.Suspend {
		replicas = 0
	}
	var affinity *corev1.Affinity
	var spread []corev1.TopologySpreadConstraint
	switch {
	case p.Node != "":
		affinity = &corev1.Affinity{NodeAffinity: OnNode(p.Node)}
	case p.NodeAffinity != nil:
		affinity = &corev1.Affinity{NodeAffinity: p.NodeAffinity}
	default:
		// A preference, not a rule: a node too full for an even spread still takes the pod.
		spread = []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{myaasv1.LabelTemplate: inst.Spec.TemplateRef.Name}},
		}}
	}

	args := []string{
		"agent", agentapi.CommandStart,
		agentapi.Flag(agentapi.FlagEngine, p.Engine.Name()),
		agentapi.Flag(agentapi.FlagDatadir, agentapi.DataDir),
		agentapi.Flag(agentapi.FlagRunDir, agentapi.RunDir),
		agentapi.Flag(agentapi.FlagCredentialsDir, agentapi.CredentialsDir),
		agentapi.Flag(agentapi.FlagAdminCredentialsDir, agentapi.AdminCredentialsDir),
		agentapi.Flag(agentapi.FlagServerID, strconv.FormatUint(uint64(ServerID(inst.UID)), 10)),
		agentapi.Flag(agentapi.FlagPort, strconv.Itoa(int(p.Engine.Port()))),
		agentapi.Flag(agentapi.FlagReadinessPort, strconv.Itoa(agentapi.ReadinessPort)),
	}
	args = append(args, tlsArgs(inst)...)
	args = append(args, serverOptionArgs(p.ServerConfig)...)
	for _, priv := range inst.Spec.ExtraPrivileges {
		args = append(args, agentapi.Flag(agentapi.FlagExtraPrivilege, string(priv)))
	}

	return &appsv1.StatefulSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            inst.Name,
			Namespace:       inst.Namespace,
			Labels:          labels,
			OwnerReferences: instanceOwner(inst),
		},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         inst.Name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: selectorLabels(inst)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					// The server and its agent never talk to the API server.
					AutomountServiceAccountToken:  ptr.To(false),
					SecurityContext:               databasePodSecurityContext(),
					Affinity:                      affinity,
					TopologySpreadConstraints:     spread,
					TerminationGracePeriodSeconds: ptr.To[int64](30),
					EnableServiceLinks:            ptr.To(false),
					InitContainers:                initContainers,
					Containers: []corev1.Container{{
						Name:            DatabaseContainer,
						Image:           p.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         []string{agent},
						Args:            args,
						Env:             instanceMemoryEnv(inst.Spec.Resources),
						Ports: []corev1.ContainerPort{
							{Name: p.Engine.PortName(), ContainerPort: p.Engine.Port(), Protocol: corev1.ProtocolTCP},
							// Reached by the kubelet only: the NetworkPolicy opens the server's port alone.
							{Name: agentapi.ReadinessPortName, ContainerPort: agentapi.ReadinessPort, Protocol: corev1.ProtocolTCP},
						},
						Resources: inst.Spec.Resources,
						// The probe logs in with the instance's own credentials, so Ready means usable.
						// The instance's Ready comes from the operator's own login through the Service,
						// which routes to the pod before it is Ready: the probe only tells kubectl and
						// the pod's status about a server that stops answering later. The agent answers
						// it over HTTP: an exec probe would start a process in the container (runc, the
						// agent, a login) each time, a noticeable part of a small node's CPU when many
						// instances start at once.
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: agentapi.ReadinessPath, Port: intstr.FromString(agentapi.ReadinessPortName),
							}},
							PeriodSeconds:    10,
							TimeoutSeconds:   5,
							FailureThreshold: 3,
						},
						VolumeMounts:    mounts,
						SecurityContext: containerSecurityContext(),
					}},
					Volumes: volumes,
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{claimTemplate},
		},
	}
}

// InstanceClaim is the clone PVC, created by the operator (owned by the instance) before the
// StatefulSet, which then finds it under the name it would have used and leaves it alone. Letting
// the StatefulSet controller create it with a deletion retention policy instead makes that
// controller write the claim's owner while the scheduler binds it: both conflict, and the pod
// waits for a scheduling retry, about two seconds of every provisioning.
func InstanceClaim(inst *myaasv1.DatabaseInstance, p StatefulSetParams) *corev1.PersistentVolumeClaim {
	pvc := instanceClaimTemplate(inst, p)
	pvc.Name = InstancePVCName(inst.Name, inst.UID, inst.Status.Resets)
	pvc.Namespace = inst.Namespace
	pvc.Labels = mergeLabels(pvc.Labels, selectorLabels(inst))
	pvc.OwnerReferences = instanceOwner(inst)
	return &pvc
}

func instanceClaimTemplate(inst *myaasv1.DatabaseInstance, p StatefulSetParams) corev1.PersistentVolumeClaim {
	var annotations map[string]string
	if p.Node != "" {
		// The provisioner makes a volume bound at once on the node the claim names; a clone of
		// a node-local snapshot can only be made on the snapshot's node.
		annotations = map[string]string{myaasv1.AnnotationNode: p.Node, AnnotationSelectedNode: p.Node}
	}
	return corev1.PersistentVolumeClaim{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Annotations: annotations,
			Name:        InstanceClaimName(inst.UID, inst.Status.Resets),
			Labels: mergeLabels(InstanceLabels(inst), map[string]string{
				myaasv1.LabelRole:     myaasv1.RoleInstanceData,
				myaasv1.LabelRevision: strconv.Itoa(int(p.Revision)),
			}),
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: p.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: p.RestoreSize},
			},
			DataSource: &corev1.TypedLocalObjectReference{
				APIGroup: ptr.To("snapshot.storage.k8s.io"),
				Kind:     "VolumeSnapshot",
				Name:     p.SnapshotName,
			},
		},
	}
}
