//! Release-time policy export (pure core): from the events a release allows (literal events and
//! the events of verified images, several versions per image name allowed), the per-PCR plans,
//! then a Keylime `tpm_policy` of every value each PCR may hold, or systemd-pcrlock components
//! (one per image name, one variant per allowed version).

use super::pcrlock::{component_name, Variant};
use super::policy::{slots_by_name, PcrPlan, PcrPolicy, PredictError};
use crate::digest::HashAlg;
use crate::measure::ImageEvent;
use std::collections::BTreeMap;

/// Per PCR: the literal events, and (image name, event string) pairs.
type ByPcr = BTreeMap<u32, (Vec<String>, Vec<(String, String)>)>;

/// Groups events into one plan per PCR. Literal events go first into `pcr` (required for
/// them); each image goes into `pcr` when given, else its class's PCR.
pub fn plans(
    pcr: Option<u32>,
    literal: &[String],
    images: &[ImageEvent],
) -> Result<Vec<PcrPlan>, String> {
    let mut by: ByPcr = BTreeMap::new();
    if !literal.is_empty() {
        let p = pcr.ok_or("literal --event strings need --pcr to say where they go")?;
        by.entry(p).or_default().0.extend(literal.iter().cloned());
    }
    for im in images {
        let p = pcr
            .or_else(|| crate::measure::default_pcr(&im.class))
            .ok_or_else(|| format!("no PCR for class {:?}", im.class))?;
        by.entry(p)
            .or_default()
            .1
            .push((im.name.clone(), im.event_string()));
    }
    Ok(by
        .into_iter()
        .map(|(pcr, (prefix, evs))| PcrPlan {
            pcr,
            prefix,
            slots: slots_by_name(&evs),
        })
        .collect())
}

/// The Keylime policy: for each plan's PCR, every value it may hold in `bank`, starting from
/// `base` (only with a single PCR).
pub fn keylime_policy(
    plans: &[PcrPlan],
    bank: HashAlg,
    base: Option<&[u8]>,
) -> Result<PcrPolicy, PredictError> {
    let mut pol = PcrPolicy::default();
    for p in plans {
        pol.allow(p.pcr, p.values(bank, base)?);
    }
    Ok(pol)
}

/// A component: its file or directory name, and its variants (file name, records). A component
/// with one variant is written as `NAME.pcrlock`; with several, as `NAME.pcrlock.d/VARIANT`.
pub struct Component {
    pub name: String,
    pub variants: Vec<(String, Variant)>,
}

/// One component per literal-event block and per image name, in measuring order.
pub fn pcrlock_components(plans: &[PcrPlan], banks: &[HashAlg]) -> Vec<Component> {
    let mut out = Vec::new();
    for p in plans {
        if !p.prefix.is_empty() {
            out.push(Component {
                name: component_name(out.len(), &format!("pcr{}-events", p.pcr)),
                variants: vec![(
                    "events.pcrlock".into(),
                    Variant::of_events(p.pcr, banks, &p.prefix),
                )],
            });
        }
        for slot in &p.slots {
            // event strings are class:name:roothash:signer
            let mut f = slot[0].split(':');
            let what = format!("{}-{}", f.next().unwrap_or("event"), f.next().unwrap_or(""));
            let variants = slot
                .iter()
                .map(|e| {
                    let root = e.split(':').nth(2).unwrap_or("x");
                    let short: String = root.chars().take(16).collect();
                    (
                        format!("{short}.pcrlock"),
                        Variant::of_events(p.pcr, banks, std::slice::from_ref(e)),
                    )
                })
                .collect();
            out.push(Component {
                name: component_name(out.len(), &what),
                variants,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(class: &str, name: &str, root: &str) -> ImageEvent {
        ImageEvent {
            class: class.into(),
            name: name.into(),
            root_hash_hex: root.into(),
            signer: None,
        }
    }

    #[test]
    fn images_go_to_their_class_pcr_and_versions_become_alternatives() {
        let ims = [
            ev("sysext", "tools", "aa"),
            ev("confext", "conf", "bb"),
            ev("sysext", "tools", "cc"),
        ];
        let ps = plans(None, &[], &ims).unwrap();
        assert_eq!(ps.iter().map(|p| p.pcr).collect::<Vec<_>>(), vec![12, 13]);
        assert_eq!(ps[1].slots[0].len(), 2);
        let pol = keylime_policy(&ps, HashAlg::Sha256, None).unwrap();
        assert_eq!(pol.pcrs[&13].len(), 2);
        assert_eq!(pol.pcrs[&12].len(), 1);
        assert!(plans(None, &["x".into()], &[]).is_err());
        let comps = pcrlock_components(&ps, &[HashAlg::Sha256]);
        assert_eq!(comps[0].name, "860-verity-confext-conf");
        assert_eq!(comps[1].name, "861-verity-sysext-tools");
        assert_eq!(comps[1].variants.len(), 2);
        assert_eq!(comps[1].variants[1].0, "cc.pcrlock");
    }
}
