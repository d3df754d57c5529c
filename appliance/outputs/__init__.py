"""Result objects sent back to PACS and the 3D printer: DICOM SEG, TID 1500 SR,
key images (Secondary Capture), STL meshes and DICOM Encapsulated STL.

Entry point: :func:`appliance.outputs.writer.write_outputs`. Importing this package
has no side effects and loads no heavy dependency.
"""
