package builder

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// TemplateLabels mark every child of a template, with the revision where there is one.
func TemplateLabels(template string, revision int32, role string) map[string]string {
	l := map[string]string{
		myaasv1.LabelManagedBy: myaasv1.ManagedBy,
		myaasv1.LabelTemplate:  template,
		myaasv1.LabelRole:      role,
	}
	if revision > 0 {
		l[myaasv1.LabelRevision] = strconv.Itoa(int(revision))
	}
	return l
}

func templateOwner(t *myaasv1.DatabaseTemplate) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(t, myaasv1.GroupVersion.WithKind("DatabaseTemplate"))}
}

// EngineImage is the server image of a template: the one it names, or the engine's default.
func EngineImage(spec myaasv1.EngineSpec) (engine.Engine, string, error) {
	eng, err := engine.Lookup(string(spec.Type))
	if err != nil {
		return nil, "", err
	}
	if spec.Image != "" {
		return eng, spec.Image, nil
	}
	version := spec.Version
	if version == "" {
		version = eng.DefaultVersion()
	}
	return eng, eng.DefaultImage(version), nil
}

// TemplatePVC is the volume revision n is imported into; its snapshot becomes the revision.
func TemplatePVC(t *myaasv1.DatabaseTemplate, n int32) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:            TemplatePVCName(t.Name, n),
			Namespace:       t.Namespace,
			Labels:          TemplateLabels(t.Name, n, myaasv1.RoleTemplateData),
			OwnerReferences: templateOwner(t),
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: t.Spec.Storage.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: t.Spec.Storage.Size},
			},
		},
	}
}

// ImportContainer is the name of the container that runs the import agent.
const ImportContainer = "import"

// ImportJob loads the template's source into revision n's PVC and shuts the server down cleanly.
// The Job never retries by itself: the operator decides, from the agent's report and the pod's
// fate, whether another attempt (a new Job) can succeed where this one failed.
func ImportJob(t *myaasv1.DatabaseTemplate, n, attempt int32, agentImage string) (*batchv1.Job, error) {
	eng, image, err := EngineImage(t.Spec.Engine)
	if err != nil {
		return nil, fmt.Errorf("spec.engine.type: %w", err)
	}
	labels := TemplateLabels(t.Name, n, myaasv1.RoleImport)

	args := []string{
		"agent", agentapi.CommandImport,
		agentapi.Flag(agentapi.FlagEngine, eng.Name()),
		agentapi.Flag(agentapi.FlagDatadir, agentapi.DataDir),
		agentapi.Flag(agentapi.FlagRunDir, agentapi.RunDir),
		agentapi.Flag(agentapi.FlagProgressAddr, fmt.Sprintf(":%d", agentapi.ProgressPort)),
		agentapi.Flag(agentapi.FlagKeepAgent, agentapi.AgentInVolume),
		agentapi.Flag(agentapi.FlagTerminationLog, agentapi.TerminationLog),
		agentapi.Flag(agentapi.FlagPostImportSQLFile, agentapi.PostImportFile),
	}
	volumes := []corev1.Volume{
		{Name: volumeData, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
			ClaimName: TemplatePVCName(t.Name, n),
		}}},
		emptyDirVolume(volumeRun),
		emptyDirVolume(volumeBin),
	}
	mounts := []corev1.VolumeMount{
		{Name: volumeData, MountPath: agentapi.DataMountPath},
		{Name: volumeRun, MountPath: agentapi.RunDir},
		{Name: volumeBin, MountPath: agentapi.AgentBinDir, ReadOnly: true},
	}
	env := []corev1.EnvVar{
		memoryLimitEnv(ImportContainer),
		cpuLimitEnv(ImportContainer),
		// A quota-limited volume (btrfs qgroup, LVM thin) shows the whole pool to statfs.
		{Name: agentapi.EnvVolumeBytes, Value: strconv.FormatInt(t.Spec.Storage.Size.Value(), 10)},
	}

	src := t.Spec.Source
	switch {
	case src.PersistentVolumeClaim != nil:
		args = append(args, agentapi.Flag(agentapi.FlagSourceDir, agentapi.SourceDir), agentapi.Flag(agentapi.FlagSourceGlob, src.PersistentVolumeClaim.Path))
		volumes = append(volumes, corev1.Volume{Name: volumeSource, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: src.PersistentVolumeClaim.ClaimName, ReadOnly: true},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: volumeSource, MountPath: agentapi.SourceDir, ReadOnly: true})
	case src.HTTP != nil:
		args = append(args, agentapi.Flag(agentapi.FlagSourceURL, src.HTTP.URL))
		if src.HTTP.SecretRef != nil {
			volumes = append(volumes, corev1.Volume{Name: volumeSourceAuth, VolumeSource: corev1.VolumeSource{
				Secret: &corev1.SecretVolumeSource{SecretName: src.HTTP.SecretRef.Name},
			}})
			mounts = append(mounts, corev1.VolumeMount{Name: volumeSourceAuth, MountPath: agentapi.SourceAuthDir, ReadOnly: true})
			args = append(args, agentapi.Flag(agentapi.FlagSourceAuthDir, agentapi.SourceAuthDir))
			if src.HTTP.Insecure {
				args = append(args, agentapi.Flag(agentapi.FlagSourceInsecure, "true"))
			}
		}
	case src.S3 != nil:
		s3 := src.S3
		args = append(args, agentapi.Flag(agentapi.FlagS3Endpoint, s3.Endpoint), agentapi.Flag(agentapi.FlagS3Bucket, s3.Bucket))
		if s3.Key != "" {
			args = append(args, agentapi.Flag(agentapi.FlagS3Key, s3.Key))
		} else {
			args = append(args, agentapi.Flag(agentapi.FlagS3Prefix, s3.Prefix))
		}
		if s3.Region != "" {
			args = append(args, agentapi.Flag(agentapi.FlagS3Region, s3.Region))
		}
		if s3.Insecure {
			args = append(args, agentapi.Flag(agentapi.FlagS3Insecure, "true"))
		}
		if s3.CredentialsSecretRef != nil {
			env = append(env,
				secretEnv(agentapi.EnvS3AccessKeyID, s3.CredentialsSecretRef.Name, agentapi.SourceKeyAccessKeyID),
				secretEnv(agentapi.EnvS3SecretAccessKey, s3.CredentialsSecretRef.Name, agentapi.SourceKeySecretAccessKey))
		}
	default:
		return nil, fmt.Errorf("spec.source: exactly one of persistentVolumeClaim, http or s3 must be set")
	}

	if p := t.Spec.PostImportSQL; p != nil {
		if len(p.Statements) > 0 {
			env = append(env, corev1.EnvVar{Name: agentapi.EnvPostImportSQL, Value: joinStatements(p.Statements)})
		}
		if p.ConfigMapRef != nil {
			volumes = append(volumes, corev1.Volume{Name: volumePostImport, VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: p.ConfigMapRef.LocalObjectReference,
					Items:                []corev1.KeyToPath{{Key: p.ConfigMapRef.Key, Path: agentapi.PostImportName}},
				},
			}})
			mounts = append(mounts, corev1.VolumeMount{Name: volumePostImport, MountPath: agentapi.PostImportDir, ReadOnly: true})
		}
	}
	if d := t.Spec.Import.SourceStallTimeout; d != nil && d.Duration > 0 {
		args = append(args, agentapi.Flag(agentapi.FlagSourceStallTimeout, d.Duration.String()))
	}
	if t.Spec.Import.AllowMissingTrailer {
		args = append(args, agentapi.Flag(agentapi.FlagAllowMissingTrailer, "true"))
	}
	for _, account := range t.Spec.Import.KeepAccounts {
		args = append(args, agentapi.Flag(agentapi.FlagKeepAccount, account))
	}
	args = append(args, serverOptionArgs(t.Spec.Engine.Config)...)

	var deadline *int64
	if t.Spec.Import.Timeout != nil && t.Spec.Import.Timeout.Duration > 0 {
		deadline = ptr.To(int64(t.Spec.Import.Timeout.Duration / time.Second))
	}

	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            ImportJobName(t.Name, n, attempt),
			Namespace:       t.Namespace,
			Labels:          labels,
			OwnerReferences: templateOwner(t),
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To[int32](0),
			ActiveDeadlineSeconds: deadline,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					AutomountServiceAccountToken: ptr.To(false),
					SecurityContext:              databasePodSecurityContext(),
					InitContainers:               []corev1.Container{installContainer(agentImage)},
					Containers: []corev1.Container{{
						Name:                     ImportContainer,
						Image:                    image,
						ImagePullPolicy:          corev1.PullIfNotPresent,
						Command:                  []string{agentapi.AgentBinary},
						Args:                     args,
						Env:                      env,
						Ports:                    []corev1.ContainerPort{{Name: "progress", ContainerPort: agentapi.ProgressPort}},
						Resources:                t.Spec.Import.Resources,
						VolumeMounts:             mounts,
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						SecurityContext:          containerSecurityContext(),
					}},
					Volumes: volumes,
				},
			},
		},
	}, nil
}

func secretEnv(name, secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
	}}}
}

// joinStatements ends every statement with a semicolon, so users may write them with or without one.
func joinStatements(stmts []string) string {
	var b strings.Builder
	for _, s := range stmts {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		b.WriteString(strings.TrimRight(s, ";"))
		b.WriteString(";\n")
	}
	return b.String()
}

// TemplateSnapshot is the VolumeSnapshot that makes revision n.
func TemplateSnapshot(t *myaasv1.DatabaseTemplate, n int32) *snapshotv1.VolumeSnapshot {
	return &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			Name:            SnapshotName(t.Name, n),
			Namespace:       t.Namespace,
			Labels:          TemplateLabels(t.Name, n, myaasv1.RoleTemplateData),
			OwnerReferences: templateOwner(t),
		},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(TemplatePVCName(t.Name, n))},
			VolumeSnapshotClassName: t.Spec.Storage.SnapshotClassName,
		},
	}
}

// RefreshCronJob creates, on schedule, a Job that asks for a new revision. The Job only announces
// the request: the operator sees it appear and runs the import itself, so a refresh started with
// `kubectl create job --from=cronjob/...` and a scheduled one take exactly the same path.
func RefreshCronJob(t *myaasv1.DatabaseTemplate, agentImage string) *batchv1.CronJob {
	labels := TemplateLabels(t.Name, 0, myaasv1.RoleRefreshRequest)
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{
			Name:            RefreshCronJobName(t.Name),
			Namespace:       t.Namespace,
			Labels:          labels,
			OwnerReferences: templateOwner(t),
		},
		Spec: batchv1.CronJobSpec{
			Schedule:                   t.Spec.Refresh.Schedule,
			TimeZone:                   t.Spec.Refresh.TimeZone,
			Suspend:                    ptr.To(t.Spec.Refresh.Suspend),
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			StartingDeadlineSeconds:    ptr.To[int64](3600),
			SuccessfulJobsHistoryLimit: ptr.To[int32](3),
			FailedJobsHistoryLimit:     ptr.To[int32](3),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: batchv1.JobSpec{
					BackoffLimit:            ptr.To[int32](0),
					TTLSecondsAfterFinished: ptr.To[int32](86400),
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec: corev1.PodSpec{
							RestartPolicy: corev1.RestartPolicyNever,
							// The request is the Job itself: its pod only prints a line and
							// needs no access to the API.
							AutomountServiceAccountToken: ptr.To(false),
							SecurityContext: &corev1.PodSecurityContext{
								RunAsNonRoot:   ptr.To(true),
								RunAsUser:      ptr.To[int64](managerUID),
								RunAsGroup:     ptr.To[int64](managerUID),
								SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
							},
							Containers: []corev1.Container{{
								Name:            "request",
								Image:           agentImage,
								ImagePullPolicy: corev1.PullIfNotPresent,
								Command:         []string{agentapi.ManagerBinary, "refresh-request", "--template=" + t.Namespace + "/" + t.Name},
								SecurityContext: containerSecurityContext(),
							}},
						},
					},
				},
			},
		},
	}
}
