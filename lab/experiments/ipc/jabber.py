LINKS = ()
