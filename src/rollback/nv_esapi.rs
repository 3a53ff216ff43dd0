//! [`EpochNv`] on a real TPM through tss-esapi 7.7 (`nv_define_space`, `nv_increment`,
//! `nv_read`, `nv_write`, `nv_read_public`), over the same connection [`EsapiTpm`] opens for
//! measurement. Owner-authorised commands assume the owner hierarchy's authorisation is empty
//! (as on a TPM nobody took ownership of); reads use the index's own empty authorisation.

use super::epoch::{EpochNv, NvInfo, NvKind};
use crate::measure::esapi::{classify, EsapiTpm};
use crate::measure::TpmError;
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::nv_index_type::NvIndexType;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::structures::{CapabilityData, MaxNvBuffer, NvPublicBuilder};

fn invalid(op: &'static str, e: impl std::fmt::Display) -> TpmError {
    TpmError::Invalid {
        op,
        reason: e.to_string(),
    }
}

fn tpm_handle(index: u32) -> Result<NvIndexTpmHandle, TpmError> {
    NvIndexTpmHandle::new(index).map_err(|e| invalid("name an NV index", e))
}

impl EsapiTpm {
    /// Runs `f` with an ESYS handle for an existing index (ESYS reads its public area to build
    /// it), then closes the handle so repeated calls do not pile up ESYS objects.
    fn with_nv<T>(
        &mut self,
        index: u32,
        f: impl FnOnce(&mut tss_esapi::Context, NvIndexHandle) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let h = tpm_handle(index)?;
        let ctx = self.context();
        let obj = ctx
            .tr_from_tpm_public(TpmHandle::NvIndex(h))
            .map_err(|e| classify("Esys_TR_FromTPMPublic(NV)", e))?;
        let r = f(ctx, NvIndexHandle::from(obj));
        let mut obj = obj;
        // A handle that cannot be closed only costs memory in this short-lived context.
        let _ = ctx.tr_close(&mut obj);
        r
    }

    fn define(&mut self, index: u32, kind: NvIndexType) -> Result<(), TpmError> {
        let attrs = NvIndexAttributesBuilder::new()
            .with_nv_index_type(kind)
            .with_owner_write(true)
            .with_owner_read(true)
            .with_auth_read(true)
            .with_no_da(true)
            .build()
            .map_err(|e| invalid("build NV attributes", e))?;
        let public = NvPublicBuilder::new()
            .with_nv_index(tpm_handle(index)?)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attrs)
            .with_data_area_size(8)
            .build()
            .map_err(|e| invalid("build an NV public area", e))?;
        self.context()
            .execute_with_nullauth_session(|c| c.nv_define_space(Provision::Owner, None, public))
            .map(|_| ())
            .map_err(|e| classify("TPM2_NV_DefineSpace", e))
    }
}

impl EpochNv for EsapiTpm {
    fn nv_info(&mut self, index: u32) -> Result<Option<NvInfo>, TpmError> {
        // The handle list starting at `index` tells whether it is defined without provoking an
        // error for a missing one.
        let (data, _) = self
            .context()
            .get_capability(CapabilityType::Handles, index, 1)
            .map_err(|e| classify("TPM2_GetCapability(HANDLES)", e))?;
        let CapabilityData::Handles(list) = data else {
            return Err(TpmError::Transport {
                op: "TPM2_GetCapability(HANDLES)",
                reason: "the answer is not a handle list".into(),
            });
        };
        let defined = list
            .iter()
            .any(|h| matches!(h, TpmHandle::NvIndex(n) if u32::from(*n) == index));
        if !defined {
            return Ok(None);
        }
        let (public, _name) = self.with_nv(index, |c, h| {
            c.nv_read_public(h)
                .map_err(|e| classify("TPM2_NV_ReadPublic", e))
        })?;
        let a = public.attributes();
        let kind = match a.index_type() {
            Ok(NvIndexType::Counter) => NvKind::Counter,
            Ok(NvIndexType::Ordinary) => NvKind::Ordinary,
            _ => NvKind::Other,
        };
        Ok(Some(NvInfo {
            kind,
            size: public.data_size(),
            written: a.written(),
            weak_write: a.auth_write() || a.policy_write(),
        }))
    }

    fn define_counter(&mut self, index: u32) -> Result<(), TpmError> {
        self.define(index, NvIndexType::Counter)
    }

    fn define_value(&mut self, index: u32) -> Result<(), TpmError> {
        self.define(index, NvIndexType::Ordinary)
    }

    fn increment(&mut self, index: u32) -> Result<(), TpmError> {
        self.with_nv(index, |c, h| {
            c.execute_with_nullauth_session(|c| c.nv_increment(NvAuth::Owner, h))
                .map_err(|e| classify("TPM2_NV_Increment", e))
        })
    }

    fn read_u64(&mut self, index: u32) -> Result<u64, TpmError> {
        let buf = self.with_nv(index, |c, h| {
            c.execute_with_nullauth_session(|c| c.nv_read(NvAuth::NvIndex(h), h, 8, 0))
                .map_err(|e| classify("TPM2_NV_Read", e))
        })?;
        let bytes: [u8; 8] = buf.value().try_into().map_err(|_| TpmError::Transport {
            op: "TPM2_NV_Read",
            reason: format!("{} bytes for an 8-byte index", buf.value().len()),
        })?;
        Ok(u64::from_be_bytes(bytes))
    }

    fn write_u64(&mut self, index: u32, value: u64) -> Result<(), TpmError> {
        let data = MaxNvBuffer::try_from(value.to_be_bytes().to_vec())
            .map_err(|e| invalid("build an NV buffer", e))?;
        self.with_nv(index, |c, h| {
            c.execute_with_nullauth_session(|c| c.nv_write(NvAuth::Owner, h, data, 0))
                .map_err(|e| classify("TPM2_NV_Write", e))
        })
    }
}
