;;; gitlockd.el --- commit the current file through gitlockd  -*- lexical-binding: t; -*-
;; M-x gitlockd-commit  commits this file now; M-x gitlockd-log shows its history.
(defun gitlockd--run (&rest args)
  (with-output-to-temp-buffer "*gitlockd*"
    (apply #'call-process "gitlockd" nil standard-output nil args)))

(defun gitlockd-commit (message)
  "Commit the current file now through gitlockd, with MESSAGE if not empty."
  (interactive "sCommit message (empty: default): ")
  (apply #'gitlockd--run "commit" (file-name-directory buffer-file-name)
         (append (unless (string= message "") (list "-m" message))
                 (list buffer-file-name))))

(defun gitlockd-log ()
  "Show the current file's history."
  (interactive)
  (gitlockd--run "log" (file-name-directory buffer-file-name) buffer-file-name "-n" "20"))

(provide 'gitlockd)
