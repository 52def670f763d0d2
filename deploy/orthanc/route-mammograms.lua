-- Orthanc auto-routing for mammo-edge (the field guide: "Connect an Orthanc PACS"; tests/test_pacs.py runs it as it is).
-- Every mammogram Orthanc stores goes to the device, except what the device itself sent (its answers: a report and
-- a capture, which are not MG anyway). 'mammo-edge' is the device's entry in Orthanc's DicomModalities, and
-- MAMMO_EDGE the device's [dicom] ae_title.
function OnStoredInstance(instanceId, tags, metadata, origin)
  if tags['Modality'] == 'MG' and origin['RemoteAet'] ~= 'MAMMO_EDGE' then
    SendToModality(instanceId, 'mammo-edge')
  end
end
