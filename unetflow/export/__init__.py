"""Results in other tools' formats: trained models as bioimage.io packages (`bioimageio`)."""
