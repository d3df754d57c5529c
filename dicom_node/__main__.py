"""``python -m dicom_node serve|status|retry`` (same verbs as ``wbspine``)."""

from dicom_node.cli import main

raise SystemExit(main())
