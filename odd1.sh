source /tmp/review_dist/env.sh
one() { # name, nproc, extra sets...
  local name=$1 n=$2; shift 2
  rm -rf $R/$name
  if [ $n = 1 ]; then timeout 300 python -m adakit run configs/office31-features.yaml --out $R/$name --quiet $TINY "$@" > $R/$name.log 2>&1
  else tr $n run configs/office31-features.yaml --out $R/$name --quiet $TINY "$@" > $R/$name.log 2>&1; fi
  echo "rc($name)=$?"
}
one b33_1 1 --set train.batch_size=33
one b33_2 2 --set train.batch_size=33
python $R/cmp.py $R/b33_1 $R/b33_2 | grep -v "^[AB] "
one probe_1 1 --set query.strategy=aada --set objective.probe_domain=true
one probe_2 2 --set query.strategy=aada --set objective.probe_domain=true
python $R/cmp.py $R/probe_1 $R/probe_2 | grep -v "^[AB] "
one n3 3
python $R/cmp.py $R/ft1 $R/n3 | grep -v "^[AB] "
