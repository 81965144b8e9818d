//! Pod-level cgroups. runc creates a pod's parent cgroup (the sandbox's `cgroup_parent`) on
//! demand but removes only each container's own; [`remove_pod`] removes the parent in every
//! hierarchy once the pod's containers are gone.

use std::path::Path;

/// Removes `parent` (e.g. `/kubepods/burstable/pod<uid>`) from every mounted hierarchy.
pub fn remove_pod(parent: &str) {
    let rel = parent.trim_start_matches('/');
    if rel.is_empty() || rel.contains("..") {
        return;
    }
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for r in roots.flatten() {
        let p = r.path().join(rel);
        if p.is_dir() {
            dirs.push(p);
        }
    }
    let direct = Path::new("/sys/fs/cgroup").join(rel);
    if direct.is_dir() && !dirs.contains(&direct) {
        dirs.push(direct);
    }
    for d in dirs {
        // Leftover child cgroups (containers runc did not get to) go first.
        if let Ok(children) = std::fs::read_dir(&d) {
            for c in children.flatten() {
                if c.path().is_dir() {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
        }
        if let Err(e) = std::fs::remove_dir(&d) {
            tracing::debug!(dir = %d.display(), error = %e, "pod cgroup not removed");
        }
    }
}
