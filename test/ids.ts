// GUIDs the tests share, in one place. Catalogue facts are looked up in data/kms-catalog.json;
// the arbitrary ones are chosen so that no catalogue list holds them.

/** Application "Windows" (data/kms-catalog.json, applications). */
export const WINDOWS_APP = '55c92734-d682-4d71-983e-d6ec3f16059f';
/** Application "Office 14 (2010)" (data/kms-catalog.json, applications). */
export const OFFICE_2010_APP = '59a52881-a989-479d-af46-f275c6370663';
/** Application "Office 2013 / 2016 / 2019 / LTSC 2021 / LTSC 2024" (data/kms-catalog.json, applications). */
export const OFFICE_2013_APP = '0ff1ce15-a989-479d-af46-f275c6370663';
/** KMS group "Windows 10/11 2015 (Volume)" of the Windows application (data/kms-catalog.json). */
export const WIN10_VOLUME_GROUP = '58e2134f-8e11-4d17-9cb2-91069c151148';
/** SKU "Windows 10/11 Enterprise" of the KMS group above (data/kms-catalog.json). */
export const WIN10_ENTERPRISE_SKU = '73111121-5638-40f6-bc11-f1d7b0d64300';

/** The nil GUID: what a first-time client sends as its previous CMID. */
export const NIL_GUID = '00000000-0000-0000-0000-000000000000';

/** Arbitrary, in no list of data/kms-catalog.json: an unknown application, KMS group, host key group. */
export const UNKNOWN_GUID = '01234567-89ab-cdef-0123-456789abcdef';
/** Arbitrary, not in the catalogue and not of version 4. */
export const SPARE_GUID = '11111111-2222-3333-4444-555555555555';
/** Arbitrary, not in the catalogue, a well-formed version-4 GUID (a CMID or an unknown SKU). */
export const SPARE_V4_GUID = '11111111-2222-4333-8444-555555555555';
/** Arbitrary version-4 GUID standing for a KMS group added after the catalogue was written. */
export const NEW_KMS_GROUP = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
/** Arbitrary: an RPC interface that is not the KMS one, for binds the host must refuse. */
export const FOREIGN_INTERFACE_UUID = '12345678-1234-abcd-ef00-0123456789ab';
