package builder

import (
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/myaas/myaas/internal/agentapi"
)

// Volume names and the uids of the pods; paths and ports come from the agent's contract.
const (
	// databaseUID is the server user of the engine images, mysql or postgres (hack/build-images.sh
	// moves it to 999 where an image has another id; the official images use 999 for both).
	databaseUID = 999
	// managerUID is the manager image's user (distroless nonroot).
	managerUID       = 65532
	volumeData       = "data"
	volumeRun        = "myaas-run"
	volumeBin        = "myaas-bin"
	volumeSource     = "source"
	volumeSourceAuth = "source-auth"
	volumePostImport = "post-import"
	volumeCreds      = "credentials"
	volumeAdminCreds = "admin-credentials"
)

// installContainer copies the myaas binary from the manager image into an emptyDir, so that the
// engine's own image runs our agent without a custom image per engine version.
func installContainer(agentImage string) corev1.Container {
	return corev1.Container{
		Name:            "install-agent",
		Image:           agentImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{agentapi.ManagerBinary, "install", agentapi.AgentBinary},
		VolumeMounts:    []corev1.VolumeMount{{Name: volumeBin, MountPath: agentapi.AgentBinDir}},
		SecurityContext: containerSecurityContext(),
	}
}

// databasePodSecurityContext runs as the mysql user of the official images; OnRootMismatch avoids
// a recursive chown of a cloned datadir at every start.
func databasePodSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsUser:           ptr.To[int64](databaseUID),
		RunAsGroup:          ptr.To[int64](databaseUID),
		RunAsNonRoot:        ptr.To(true),
		FSGroup:             ptr.To[int64](databaseUID),
		FSGroupChangePolicy: ptr.To(corev1.FSGroupChangeOnRootMismatch),
		SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// containerSecurityContext is what the Pod Security Standards' restricted profile asks of every
// container, beyond the pod's non-root user and RuntimeDefault seccomp profile.
func containerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

func emptyDirVolume(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

// memoryLimitEnv lets the agent size the buffer pool from the container's limit.
// cpuLimitEnv passes the container's CPU limit in whole cores (the downward API rounds up); without
// a limit it reports the node's cores.
func cpuLimitEnv(container string) corev1.EnvVar {
	return corev1.EnvVar{
		Name: agentapi.EnvCPULimit,
		ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			ContainerName: container, Resource: "limits.cpu",
		}},
	}
}

func memoryLimitEnv(container string) corev1.EnvVar {
	return corev1.EnvVar{
		Name: agentapi.EnvMemoryLimit,
		ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			ContainerName: container, Resource: "limits.memory",
		}},
	}
}

// instanceMemoryEnv passes the instance's memory limit, if it has one. Without a limit the
// downward API would report the whole node, and every clone would size its buffer pool for it:
// twenty instances starting at once would each set up a pool of most of the node's memory.
func instanceMemoryEnv(res corev1.ResourceRequirements) []corev1.EnvVar {
	limit, ok := res.Limits[corev1.ResourceMemory]
	if !ok {
		return nil
	}
	return []corev1.EnvVar{{Name: agentapi.EnvMemoryLimit, Value: strconv.FormatInt(limit.Value(), 10)}}
}

// serverOptionArgs renders the template's server options in a stable order, so the pod template
// does not change (and restart the pod) when only the map's iteration order does.
func serverOptionArgs(config map[string]string) []string {
	keys := make([]string, 0, len(config))
	for k := range config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, len(keys))
	for _, k := range keys {
		args = append(args, agentapi.Flag(agentapi.FlagServerOption, k+"="+config[k]))
	}
	return args
}

func mergeLabels(sets ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, s := range sets {
		for k, v := range s {
			out[k] = v
		}
	}
	return out
}
