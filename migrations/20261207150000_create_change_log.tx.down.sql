DROP TABLE IF EXISTS change_log;

--bun:split

DROP TABLE IF EXISTS change_log_head;
