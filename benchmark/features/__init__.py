"""Features shared by model families (bag of events); model packages import them from here."""
