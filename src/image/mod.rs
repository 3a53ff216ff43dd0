//! Extension and root images: DDI (GPT) dissection and building, the signature partition, sidecar
//! images, extension-release matching and image policy.
